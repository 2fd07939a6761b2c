"""LoRA parity with PEFT, in two phases around sweep's test (crates/trainer/tests/peft_parity.rs):

    python scripts/peft_parity.py write OUT_DIR   # tiny checkpoints, PEFT adapters, references
    python scripts/peft_parity.py check OUT_DIR   # what sweep saved, loaded by PEFT and transformers

scripts/peft-parity runs all three in .venv-torch (Llama, Qwen2, Mistral and Phi-3 shapes).

`write` makes, for each architecture, OUT_DIR/<name>/: the base checkpoint (save_pretrained,
plus a byte-level tokenizer and a ChatML template, which sweep's loader requires), `adapter/`
(a PEFT LoRA adapter on every projection (Phi-3's four, two of them fused) with random A
*and* B, so the adapters change the logits), `grads/` (the adapter's gradients of the mean next-token loss on one sequence,
unclipped, written as an adapter), `stepped/` (the adapter after one AdamW step with clipping
and weight decay on that loss) and reference.json (PEFT's logits with the adapter,
the step's loss and its settings).

`check` reads what sweep wrote into OUT_DIR/<name>/sweep/ (its logits after its own step, its
adapter directory and its merged model) and requires PEFT, loading sweep's adapter onto the
base, and transformers, loading the merged directory, to compute sweep's logits.
"""

import json
import shutil
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import save_file
from transformers import (AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM,
                          Phi3Config, Phi3ForCausalLM, Qwen2Config, Qwen2ForCausalLM)

sys.path.insert(0, str(Path(__file__).parent))
from hf_parity import COMMON, tokenizer_files  # noqa: E402

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
# Phi-3 fuses q, k, v and gate, up: PEFT adapts the fused modules as wholes.
FUSED_TARGETS = ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"]
RANK, ALPHA = 4, 8
STEP = {"lr": 1e-3, "beta1": 0.9, "beta2": 0.95, "eps": 1e-8, "weight_decay": 0.1, "grad_clip": 1.0}
IDS = [256, 5, 17, 99, 42, 7, 250, 3, 64, 128, 11, 257, 256, 1, 2]

CASES = {
    "llama-gqa-tied": lambda: LlamaForCausalLM(LlamaConfig(**COMMON, tie_word_embeddings=True, rope_theta=10000.0)),
    "qwen2-biases": lambda: Qwen2ForCausalLM(
        Qwen2Config(**COMMON, tie_word_embeddings=False, rope_theta=1000000.0, use_sliding_window=False)
    ),
    "mistral-window": lambda: MistralForCausalLM(
        MistralConfig(**COMMON, tie_word_embeddings=False, rope_theta=1000000.0, sliding_window=64)
    ),
    "phi3-fused": lambda: Phi3ForCausalLM(
        Phi3Config(**COMMON, tie_word_embeddings=False, rope_theta=10000.0, sliding_window=64,
                   pad_token_id=0, bos_token_id=1, eos_token_id=2)
    ),
}


def write(out):
    torch.manual_seed(0)
    ids = torch.tensor([IDS])
    for name, make in CASES.items():
        target = out / name
        model = make().eval()
        model.save_pretrained(target)
        tokenizer_files(target)
        targets = FUSED_TARGETS if name.startswith("phi3") else TARGETS
        config = LoraConfig(r=RANK, lora_alpha=ALPHA, lora_dropout=0.0, target_modules=targets,
                            init_lora_weights=False, task_type="CAUSAL_LM")
        # init_lora_weights=False draws B as well as A, so the adapter changes the logits.
        peft = get_peft_model(model, config)
        peft.save_pretrained(target / "adapter")
        with torch.no_grad():
            logits = peft(ids).logits[0]
        trainable = [p for p in peft.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(trainable, lr=STEP["lr"], betas=(STEP["beta1"], STEP["beta2"]),
                                      eps=STEP["eps"], weight_decay=STEP["weight_decay"])
        peft.train()
        loss = F.cross_entropy(peft(ids).logits[0, :-1], ids[0, 1:])
        loss.backward()
        # The gradients, unclipped, as an adapter directory of their own (same names and
        # shapes), so sweep's test reads them with its adapter reader.
        grads = {n.replace(".default", ""): p.grad.detach().clone()
                 for n, p in peft.named_parameters() if p.requires_grad}
        (target / "grads").mkdir()
        save_file(grads, target / "grads" / "adapter_model.safetensors", metadata={"format": "pt"})
        shutil.copy(target / "adapter" / "adapter_config.json", target / "grads")
        torch.nn.utils.clip_grad_norm_(trainable, STEP["grad_clip"])
        optimizer.step()
        peft.save_pretrained(target / "stepped")
        (target / "reference.json").write_text(json.dumps({
            "ids": IDS,
            "logits": logits.flatten().tolist(),
            "vocab": logits.shape[1],
            "loss": loss.item(),
            "step": STEP,
        }) + "\n")
        print(f"{target}: {sum(p.numel() for p in trainable):,} adapter weights, loss {loss.item():.6f}")


def check(out):
    failed = []
    for name in CASES:
        case = out / name
        saved = case / "sweep"
        reference = json.loads((saved / "logits.json").read_text())
        ids = torch.tensor([reference["ids"]])
        expected = torch.tensor(reference["logits"])
        base = AutoModelForCausalLM.from_pretrained(case, dtype=torch.float32).eval()
        peft = PeftModel.from_pretrained(base, saved / "adapter").eval()
        merged = AutoModelForCausalLM.from_pretrained(saved / "merged", dtype=torch.float32).eval()
        with torch.no_grad():
            for label, model in [("PEFT with sweep's adapter", peft), ("transformers, sweep's merged model", merged)]:
                worst = (model(ids).logits[0].flatten() - expected).abs().max().item()
                scale = expected.abs().max().item()
                print(f"{case}: {label} vs sweep: max |dlogit| {worst:.2e} (logits up to {scale:.1f})")
                if worst > 1e-4 * max(1.0, scale / 50.0):
                    failed.append(f"{name}: {label}: {worst}")
    if failed:
        sys.exit("logits differ from sweep's:\n" + "\n".join(failed))


if __name__ == "__main__":
    {"write": write, "check": check}[sys.argv[1]](Path(sys.argv[2]))
