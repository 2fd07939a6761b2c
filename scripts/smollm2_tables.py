"""The SmolLM2 tables of docs/reproduction.md, from `sweep export` files (stdlib only):

    python3 scripts/smollm2_tables.py paper docs/results/smollm2-paper-trials.csv
    python3 scripts/smollm2_tables.py bases docs/results/smollm2-paper-trials.csv \\
        docs/results/smollm2-bases-trials.csv [docs/results/smollm2-bases-seed1-trials.csv]
    python3 scripts/smollm2_tables.py lora docs/results/smollm2-bases-trials.csv \
        docs/results/smollm2-lora-trials.csv [docs/results/smollm2-bases-seed1-trials.csv \
        docs/results/smollm2-lora-seed1-trials.csv]

`paper`: one row per configuration, each cell seed 0 / seed 1. `bases`: the same rows, each
cell base 0 seed 0 / base 0 seed 1 / base 1 seed 0 (/ base 1 seed 1, from the third file). `lora`: the second alignment's full
fine-tuning (and the aligned model) beside each LoRA configuration, one row per method and
EMA decay, each cell seed 0 / seed 1 when the seed-1 sweeps' files are given.
"""

import csv
import sys

METRICS = ["unsafe_rate", "unsafe_rate_no_echo", "complies_rate", "over_refusal_rate",
           "hellaswag_acc_norm", "arc_easy_acc_norm", "eval_loss"]
ROWS = [
    ("aligned model (steps 0)", "2e-05", "0", "0.0"),
    ("lr 2e-5, 20 steps", "2e-05", "20", "0.0"),
    ("lr 2e-5, 20 steps, EMA 0.9", "2e-05", "20", "0.9"),
    ("lr 1e-4, 20 steps", "0.0001", "20", "0.0"),
    ("lr 1e-4, 20 steps, EMA 0.9", "0.0001", "20", "0.9"),
]
LORA_ROWS = [
    ("aligned model (steps 0)", None, "2e-05", "0", "0.0"),
    ("full fine-tuning, lr 1e-4", None, "0.0001", "20", "0.0"),
    ("full fine-tuning, lr 1e-4, EMA 0.9", None, "0.0001", "20", "0.9"),
    ("full fine-tuning, lr 2e-5", None, "2e-05", "20", "0.0"),
    ("full fine-tuning, lr 2e-5, EMA 0.9", None, "2e-05", "20", "0.9"),
    ("LoRA r 8, attention, lr 1e-4", ("8", "attention"), "0.0001", "20", "0.0"),
    ("LoRA r 8, attention, lr 1e-4, EMA 0.9", ("8", "attention"), "0.0001", "20", "0.9"),
    ("LoRA r 64, attention, lr 1e-4", ("64", "attention"), "0.0001", "20", "0.0"),
    ("LoRA r 64, attention, lr 1e-4, EMA 0.9", ("64", "attention"), "0.0001", "20", "0.9"),
    ("LoRA r 8, all linear, lr 1e-4", ("8", "all"), "0.0001", "20", "0.0"),
    ("LoRA r 8, all linear, lr 1e-4, EMA 0.9", ("8", "all"), "0.0001", "20", "0.9"),
    ("LoRA r 64, all linear, lr 1e-4", ("64", "all"), "0.0001", "20", "0.0"),
    ("LoRA r 64, all linear, lr 1e-4, EMA 0.9", ("64", "all"), "0.0001", "20", "0.9"),
    ("LoRA r 8, all linear, lr 1e-3", ("8", "all"), "0.001", "20", "0.0"),
    ("LoRA r 8, all linear, lr 1e-3, EMA 0.9", ("8", "all"), "0.001", "20", "0.9"),
]


def read(path):
    return list(csv.DictReader(open(path)))


def value(rows, metric, **want):
    """The metric of the one trial whose parameters equal `want` (numbers compared as
    numbers), to three decimals; "?" when no trial matches."""
    def same(r, k, v):
        have = r.get("param_" + k, "")
        try:
            return float(have) == float(v)
        except ValueError:
            return have == v
    for r in rows:
        if r["status"] == "completed" and all(same(r, k, v) for k, v in want.items()):
            return f"{float(r['metric_' + metric]):.3f}"
    return "?"


def header(metrics):
    print("| | " + " | ".join(f"`{m}`" for m in metrics) + " |")
    print("|---" * (len(metrics) + 1) + "|")


def paper(path):
    rows = read(path)
    header(METRICS)
    for name, lr, steps, decay in ROWS:
        cells = []
        for m in METRICS:
            seeds = [value(rows, m, learning_rate=lr, steps=steps, ema_decay=decay, seed=s)
                     for s in ("0", "1")]
            cells.append(" / ".join(seeds))
        print(f"| {name} | " + " | ".join(cells) + " |")


def bases(paper_path, *bases_paths):
    first, second = read(paper_path), [read(p) for p in bases_paths]
    header(METRICS)
    for name, lr, steps, decay in ROWS:
        cells = []
        for m in METRICS:
            runs = [value(first, m, learning_rate=lr, steps=steps, ema_decay=decay, seed=s)
                    for s in ("0", "1")]
            runs += ["**" + value(rows, m, learning_rate=lr, steps=steps, ema_decay=decay) + "**"
                     for rows in second]
            cells.append(" / ".join(runs))
        print(f"| {name} | " + " | ".join(cells) + " |")


def lora(bases_path, lora_path, *seed1_paths):
    seeds = [(read(bases_path), read(lora_path))]
    if seed1_paths:
        seeds.append((read(seed1_paths[0]), read(seed1_paths[1])))
    header(METRICS)
    for name, adapter, lr, steps, decay in LORA_ROWS:
        cells = []
        for m in METRICS:
            runs = []
            for full, adapters in seeds:
                if adapter is None:
                    runs.append(value(full, m, learning_rate=lr, steps=steps, ema_decay=decay))
                else:
                    rank, targets = adapter
                    runs.append(value(adapters, m, learning_rate=lr, lora_rank=rank,
                                      lora_targets=targets, steps=steps, ema_decay=decay))
            cells.append(" / ".join(runs))
        print(f"| {name} | " + " | ".join(cells) + " |")

if __name__ == "__main__":
    {"paper": paper, "bases": bases, "lora": lora}[sys.argv[1]](*sys.argv[2:])
