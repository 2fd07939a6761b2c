"""A trial that fine-tunes with transformers, not with sweep's trainer, and is scored by
sweep: `sweeps/python-trainer.toml` runs it (`scripts/python-trainer-env` makes the venv).

It reads its parameters from SWEEP_PARAMS (`model`, a Hugging Face directory; `data`, Alpaca
JSON; `learning_rate`, `steps`, `batch_size`, `seed`; `eval`, a file of [trainer] keys),
fine-tunes with AdamW on the answers' tokens through the model's chat template, printing a
`train_loss` curve, saves the model to SWEEP_TRIAL_DIR/model, and ends with `sweep eval`,
whose result line (the built-in trainer's metrics) is this trial's result. CPU, fp32.
"""

import json
import os
import random
import subprocess
import sys

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer


def examples(tokenizer, records, max_len):
    """Token ids and labels (-100 on the prompt) of each Alpaca record."""
    out = []
    for r in records:
        prompt = r["instruction"] + (f"\n\n{r['input']}" if r.get("input") else "")
        asked = [{"role": "user", "content": prompt}]
        prompt_text = tokenizer.apply_chat_template(asked, add_generation_prompt=True, tokenize=False)
        whole = tokenizer.apply_chat_template(
            asked + [{"role": "assistant", "content": r["output"]}], tokenize=False
        )
        ids = tokenizer(whole, add_special_tokens=False).input_ids[:max_len]
        n = len(tokenizer(prompt_text, add_special_tokens=False).input_ids)
        out.append((ids, [-100] * min(n, len(ids)) + ids[n:]))
    return out


def main():
    params = json.loads(os.environ["SWEEP_PARAMS"])
    trial_dir = os.environ["SWEEP_TRIAL_DIR"]
    torch.manual_seed(params.get("seed", 0))
    rng = random.Random(params.get("seed", 0))
    tokenizer = AutoTokenizer.from_pretrained(params["model"])
    model = AutoModelForCausalLM.from_pretrained(params["model"], dtype=torch.float32)
    with open(params["data"], encoding="utf-8") as f:
        data = examples(tokenizer, json.load(f), params.get("max_len", 256))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    optimizer = torch.optim.AdamW(model.parameters(), lr=params["learning_rate"], weight_decay=0.0)
    model.train()
    for step in range(1, params["steps"] + 1):
        batch = [rng.choice(data) for _ in range(params.get("batch_size", 4))]
        width = max(len(ids) for ids, _ in batch)
        ids = torch.tensor([i + [pad] * (width - len(i)) for i, _ in batch])
        labels = torch.tensor([l + [-100] * (width - len(l)) for _, l in batch])
        mask = torch.tensor([[1] * len(i) + [0] * (width - len(i)) for i, _ in batch])
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        print(json.dumps({"event": "metric", "step": step, "name": "train_loss", "value": loss.item()}), flush=True)
    saved = os.path.join(trial_dir, "model")
    model.save_pretrained(saved)
    tokenizer.save_pretrained(saved)
    # sweep's evaluation of the saved model; its stdout (one result line) is ours.
    command = [os.environ["SWEEP_BIN"], "eval", saved, "--format", "event"]
    if params.get("eval"):
        command += ["--config", params["eval"]]
    sys.exit(subprocess.run(command).returncode)


if __name__ == "__main__":
    main()
