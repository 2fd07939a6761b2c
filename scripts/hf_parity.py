"""Writes tiny random Hugging Face checkpoints with transformers' own reference outputs, for
tests/hf_parity.rs (sweep's forward pass and greedy decoding against transformers'):

    python scripts/hf_parity.py OUT_DIR                # run by scripts/hf-parity, in .venv-torch
    python scripts/hf_parity.py check-saved OUT_DIR    # after it: what sweep saved, in transformers

Each OUT_DIR/<name>/ is a model directory as save_pretrained writes it (plus a byte-level
tokenizer and a ChatML template, which the loader requires) and reference.json: the input
ids, transformers' fp32 logits for them, and 32 greedy tokens from model.generate. The final
norm's weight is raised so that logits of random weights are far apart and greedy choices are
not decided by rounding.
"""

import json
import sys
from pathlib import Path

import torch
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
from transformers import (AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM, Phi3Config,
                          Phi3ForCausalLM, Qwen2Config, Qwen2ForCausalLM)

CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content']"
    " + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

COMMON = dict(
    vocab_size=300,
    hidden_size=64,
    intermediate_size=112,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=128,
    rms_norm_eps=1e-6,
    initializer_range=0.2,
)

CASES = {
    "llama-gqa-tied": lambda: LlamaForCausalLM(LlamaConfig(**COMMON, tie_word_embeddings=True, rope_theta=10000.0)),
    "llama3-scaled-untied": lambda: LlamaForCausalLM(
        LlamaConfig(
            **COMMON,
            tie_word_embeddings=False,
            rope_theta=500000.0,
            rope_scaling={
                "rope_type": "llama3",
                "factor": 8.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 32,
            },
        )
    ),
    "qwen2-biases": lambda: Qwen2ForCausalLM(
        Qwen2Config(**COMMON, tie_word_embeddings=False, rope_theta=1000000.0, use_sliding_window=False)
    ),
    # A window wider than the 47 positions run: sweep caps the context there.
    "mistral-window": lambda: MistralForCausalLM(
        MistralConfig(**COMMON, tie_word_embeddings=False, rope_theta=1000000.0, sliding_window=64)
    ),
    # Fused qkv_proj and gate_up_proj, a sliding window, untied.
    "phi3-fused": lambda: Phi3ForCausalLM(
        Phi3Config(**COMMON, tie_word_embeddings=False, rope_theta=10000.0, sliding_window=64,
                   pad_token_id=0, bos_token_id=1, eos_token_id=2)
    ),
}


def tokenizer_files(out):
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    bpe = models.BPE(vocab={c: i for i, c in enumerate(alphabet)}, merges=[])
    tok = Tokenizer(bpe)
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken("<|im_start|>", special=True), AddedToken("<|im_end|>", special=True)])
    tok.save(str(out / "tokenizer.json"))
    (out / "tokenizer_config.json").write_text(
        json.dumps({"chat_template": CHATML, "eos_token": "<|im_end|>", "pad_token": "<|im_end|>"}) + "\n"
    )


def smollm2(out, model_dir):
    """transformers' logits and greedy tokens for the converted SmolLM2 directory itself: the
    reference points at the model instead of holding one."""
    model = LlamaForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="eager").eval()
    # ChatML: "What is the capital of France? Answer in one word.", then the assistant's turn.
    ids = torch.tensor([[1, 4093, 198, 1780, 314, 260, 3575, 282, 4649, 47, 19842, 281, 582, 2229, 30, 2, 198, 1, 520, 9531, 198]])
    with torch.no_grad():
        logits = model(ids).logits[0]
        greedy = model.generate(ids, max_new_tokens=32, min_new_tokens=32, do_sample=False,
                                eos_token_id=None, pad_token_id=0)[0, ids.shape[1]:]
    target = out / "smollm2"
    target.mkdir(parents=True)
    (target / "reference.json").write_text(json.dumps({
        "model": str(Path(model_dir).resolve()),
        "ids": ids[0].tolist(),
        "logits": logits.flatten().tolist(),
        "vocab": logits.shape[1],
        "greedy": greedy.tolist(),
    }) + "\n")
    print(f"{target}: reference for {model_dir}")


def saved_by_sweep(directory):
    """A directory sweep saved (tests/smollm2.rs: two fine-tuning steps, then save_weights;
    tests/hf_parity.rs: each tiny checkpoint as loaded) loads in transformers and gives the
    logits sweep computed."""
    reference = json.loads((directory / "sweep-logits.json").read_text())
    model = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32, attn_implementation="eager").eval()
    with torch.no_grad():
        logits = model(torch.tensor([reference["ids"]])).logits[0].flatten()
    worst = (logits - torch.tensor(reference["logits"])).abs().max().item()
    scale = logits.abs().max().item()
    print(f"{directory}: transformers vs sweep max |dlogit| {worst:.2e} (logits up to {scale:.1f})")
    # f32 rounding through 30 layers: 1e-5 of the largest logit (a wrong name or orientation
    # in the saved file would be off by whole units).
    if worst > 1e-5 * scale:
        sys.exit(f"{directory}: transformers' logits differ from sweep's by {worst}")


def main(out, smollm2_dir=None, saved=None):
    out = Path(out)
    if smollm2_dir:
        smollm2(out, smollm2_dir)
    if saved:
        saved_by_sweep(Path(saved))
    torch.manual_seed(0)
    ids = torch.tensor([[256, 5, 17, 99, 42, 7, 250, 3, 64, 128, 11, 257, 256, 1, 2]])
    for name, make in CASES.items():
        model = make().eval()
        with torch.no_grad():
            model.model.norm.weight.fill_(8.0)
            logits = model(ids).logits[0]
            greedy = model.generate(
                ids, max_new_tokens=32, min_new_tokens=32, do_sample=False, eos_token_id=None, pad_token_id=0
            )[0, ids.shape[1]:]
        target = out / name
        model.save_pretrained(target)
        tokenizer_files(target)
        (target / "reference.json").write_text(
            json.dumps(
                {
                    "ids": ids[0].tolist(),
                    "logits": logits.flatten().tolist(),
                    "vocab": logits.shape[1],
                    "greedy": greedy.tolist(),
                }
            )
            + "\n"
        )
        print(f"{target}: {sum(p.numel() for p in model.parameters()):,} parameters")


def check_saved(out):
    """Every tiny checkpoint sweep saved again (tests/hf_parity.rs) loads in transformers."""
    saved = sorted(Path(out).glob("*/saved-by-sweep"))
    if len(saved) < len(CASES):
        sys.exit(f"{out}: {len(saved)} directories saved by sweep, {len(CASES)} expected")
    for directory in saved:
        saved_by_sweep(directory)


if __name__ == "__main__":
    if sys.argv[1:2] == ["check-saved"]:
        check_saved(sys.argv[2])
    else:
        main(*sys.argv[1:])
