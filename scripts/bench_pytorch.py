#!/usr/bin/env python3
"""The built-in trainer's model in PyTorch eager, for the step-time ratio in docs/performance.md.

Same shapes as `cargo bench -p sweep-trainer --bench trainer` ("step, fixed 16 x 64 batch"):
a Llama-style decoder with d_model 128, 4 heads, 2 layers, SwiGLU hidden 256, untied head,
byte vocabulary of 258, interleaved rotary positions (burn's convention), AdamW
(betas 0.9/0.95, eps 1e-8, weight decay 0.1, clip 1.0), batch 16 x 64 random tokens with every
position a target. Also times the parameter EMA (torch._foreach_lerp_) and greedy generation
with a KV cache. Prints medians.

    python3 -m venv venv && venv/bin/pip install torch==2.9.0
    venv/bin/python scripts/bench_pytorch.py --threads 2

Not part of the build or the tests: it only measures the reference.
"""

import argparse
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

VOCAB, D, HEADS, LAYERS, FF, MAX_SEQ = 258, 128, 4, 2, 256, 160


def rope_tables(head_dim, max_seq):
    inv = 1.0 / (10000 ** (torch.arange(0, head_dim, 2).float() / head_dim))
    freqs = torch.outer(torch.arange(max_seq).float(), inv)
    return freqs.cos(), freqs.sin()


def rope(x, cos, sin, start):
    # Interleaved pairs (x0, x1), (x2, x3), ... as burn's RotaryEncoding rotates them.
    t = x.shape[-2]
    c, s = cos[start : start + t], sin[start : start + t]
    even, odd = x[..., 0::2], x[..., 1::2]
    out = torch.stack((even * c - odd * s, even * s + odd * c), dim=-1)
    return out.flatten(-2)


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.attn_norm, self.mlp_norm = nn.RMSNorm(D), nn.RMSNorm(D)
        self.q, self.k, self.v, self.o = (nn.Linear(D, D, bias=False) for _ in range(4))
        self.gate, self.up = nn.Linear(D, FF, bias=False), nn.Linear(D, FF, bias=False)
        self.down = nn.Linear(FF, D, bias=False)

    def forward(self, x, cos, sin, cache=None):
        b, t, _ = x.shape
        hd = D // HEADS
        h = self.attn_norm(x)
        split = lambda y: y.view(b, t, HEADS, hd).transpose(1, 2)
        start = 0 if cache is None or cache[0] is None else cache[0].shape[2]
        q = rope(split(self.q(h)), cos, sin, start)
        k = rope(split(self.k(h)), cos, sin, start)
        v = split(self.v(h))
        if cache is not None:
            if cache[0] is not None:
                k, v = torch.cat([cache[0], k], 2), torch.cat([cache[1], v], 2)
            cache[0], cache[1] = k, v
        scores = (q @ k.transpose(2, 3)) / hd**0.5
        keys = k.shape[2]
        mask = torch.ones(t, keys, dtype=torch.bool).triu(keys - t + 1)
        scores = scores.masked_fill(mask, float("-inf"))
        att = (scores.softmax(-1) @ v).transpose(1, 2).reshape(b, t, D)
        x = x + self.o(att)
        h = self.mlp_norm(x)
        return x + self.down(F.silu(self.gate(h)) * self.up(h))


class Lm(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, D)
        self.blocks = nn.ModuleList(Block() for _ in range(LAYERS))
        self.norm = nn.RMSNorm(D)
        self.head = nn.Linear(D, VOCAB, bias=False)
        cos, sin = rope_tables(D // HEADS, MAX_SEQ)
        self.register_buffer("cos", cos)
        self.register_buffer("sin", sin)

    def forward(self, tokens, caches=None):
        x = self.embed(tokens)
        for i, block in enumerate(self.blocks):
            x = block(x, self.cos, self.sin, None if caches is None else caches[i])
        return self.head(self.norm(x))


def median_ms(fn, warmup, runs):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    dev = torch.device(args.device)
    if dev.type == "cuda":
        torch.set_default_device(dev)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    model = Lm()
    params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    batch = torch.randint(0, 256, (16, 65))

    def step():
        logits = model(batch[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, VOCAB), batch[:, 1:].reshape(-1))
        loss.item()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sync()

    step_ms = median_ms(step, 3, 20)

    # The same step in its three phases, as the Rust bench splits it.
    phase_times = {"forward": [], "backward": [], "update": []}
    for i in range(23):
        t0 = time.perf_counter()
        logits = model(batch[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, VOCAB), batch[:, 1:].reshape(-1))
        loss.item()
        t1 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        sync()
        t2 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sync()
        t3 = time.perf_counter()
        if i >= 3:
            for name, dt in zip(phase_times, (t1 - t0, t2 - t1, t3 - t2)):
                phase_times[name].append(dt * 1e3)
    fwd, bwd, upd = (statistics.median(v) for v in phase_times.values())
    shadow = [p.detach().clone() for p in model.parameters()]
    current = [p.detach() for p in model.parameters()]
    ema_ms = median_ms(lambda: torch._foreach_lerp_(shadow, current, 0.01), 3, 50)

    prompts = [list(f"### Instruction:\nHow do I fix a car number {i}?\n### Response:\n".encode()) for i in range(128)]

    @torch.no_grad()
    def generate():
        produced = 0
        for chunk in range(0, len(prompts), 32):
            rows = prompts[chunk : chunk + 32]
            width = max(len(r) for r in rows)
            # Equal-length prompts here, so no padding mask is needed.
            tokens = torch.tensor([[0] * (width - len(r)) + r for r in rows])
            caches = [[None, None] for _ in range(LAYERS)]
            for _ in range(48):
                logits = model(tokens, caches)
                tokens = logits[:, -1].argmax(-1, keepdim=True)
                produced += tokens.shape[0]
        return produced

    generate()
    t = time.perf_counter()
    produced = generate()
    gen_s = time.perf_counter() - t

    print(f"model: {params} parameters, torch {torch.__version__}, {args.threads} threads, {dev}")
    print("| measurement | median |")
    print("|---|---|")
    print(f"| step, fixed 16 x 64 batch | {step_ms:.1f} ms |")
    print(f"| fixed batch: forward + loss / backward / clip + AdamW | {fwd:.1f} / {bwd:.1f} / {upd:.1f} ms |")
    print(f"| EMA update (_foreach_lerp_) | {ema_ms:.2f} ms ({100 * ema_ms / step_ms:.1f} % of a step) |")
    print(f"| greedy generation, 128 prompts x 48 tokens, KV cache, batches of 32 | {gen_s:.2f} s, {produced / gen_s:.0f} tokens/s |")


if __name__ == "__main__":
    main()
