"""transformers (eager, fp32, CPU) on the SmolLM2 directory scripts/smollm2 writes, with the
shapes and token ids of crates/trainer/benches/smollm2.rs: one AdamW step on a 4 x 128-token
batch (every next token a target, then with a 64-token prompt left out), fully and with PEFT
LoRA (r 8, all seven projections), and greedy generation of 32
tokens for 8 prompts of 24 tokens. Prints medians.

    python scripts/bench_smollm2.py MODEL_DIR [RUNS]
"""

import json
import statistics
import sys
import time

import torch
from transformers import LlamaForCausalLM


def token(i, j):
    return (i * 7919 + j * 104729) % 48000 + 100


PROMPT = 64


def step_time(model, trainable, lr, batch, runs, prompt=0):
    """The median time of `runs` AdamW steps (clipped to norm 1) of `trainable`, after one
    to warm up, every next token a target but those of the first `prompt` positions (left
    out with -100, as transformers' Trainer leaves out a prompt: its head still runs there)."""
    model.train()
    optimizer = torch.optim.AdamW(trainable, lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    times = []
    for run in range(runs + 1):
        start = time.perf_counter()
        logits = model(batch[:, :-1]).logits
        labels = batch[:, 1:].clone()
        labels[:, :prompt] = -100
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1),
                                                 ignore_index=-100)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        optimizer.zero_grad()
        if run > 0:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(model_dir, runs="5"):
    runs = int(runs)
    model = LlamaForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="eager").eval()
    prompts = torch.tensor([[token(i, j) for j in range(24)] for i in range(8)])
    times = []
    for run in range(runs + 1):
        start = time.perf_counter()
        with torch.no_grad():
            out = model.generate(prompts, max_new_tokens=32, min_new_tokens=32, do_sample=False,
                                 eos_token_id=None, pad_token_id=0)
        assert out.shape[1] == 24 + 32
        if run > 0:
            times.append(time.perf_counter() - start)
    generation = statistics.median(times)

    batch = torch.tensor([[token(i, j) for j in range(129)] for i in range(4)])
    step = step_time(model, list(model.parameters()), 1e-5, batch, runs)
    instruction_step = step_time(model, list(model.parameters()), 1e-5, batch, runs, prompt=PROMPT)

    # LoRA r 8, alpha 16, on all seven projections (PEFT): the same batch and step.
    from peft import LoraConfig, get_peft_model
    model = LlamaForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="eager")
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, task_type="CAUSAL_LM",
                                             target_modules=["q_proj", "k_proj", "v_proj", "o_proj",
                                                             "gate_proj", "up_proj", "down_proj"]))
    lora_step = step_time(model, [p for p in model.parameters() if p.requires_grad], 1e-4, batch, runs)
    print(json.dumps({
        "impl": f"transformers {__import__('transformers').__version__} eager, torch {torch.__version__} cpu ({torch.get_num_threads()} threads)",
        "runs": runs,
        "train_step_s": step,
        "instruction_step_s": instruction_step,
        "lora_step_s": lora_step,
        "generate_s": generation,
        "generate_tokens_per_s": 8 * 32 / generation,
    }))


if __name__ == "__main__":
    main(*sys.argv[1:])
