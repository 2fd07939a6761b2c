"""The SmolLM2 grid's table in docs/reproduction.md, from `sweep export smollm2-paper` (stdlib
only): one row per configuration, each cell seed 0 / seed 1.

    python3 scripts/smollm2_tables.py docs/results/smollm2-paper-trials.csv
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


def main(path):
    rows = list(csv.DictReader(open(path)))

    def cell(lr, steps, decay, seed, metric):
        for r in rows:
            if (float(r["param_learning_rate"]) == float(lr) and r["param_steps"] == steps
                    and float(r["param_ema_decay"]) == float(decay) and r["param_seed"] == seed):
                return f"{float(r['metric_' + metric]):.3f}"
        return "?"

    print("| | " + " | ".join(f"`{m}`" for m in METRICS) + " |")
    print("|---" * (len(METRICS) + 1) + "|")
    for name, lr, steps, decay in ROWS:
        cells = [f"{cell(lr, steps, decay, '0', m)} / {cell(lr, steps, decay, '1', m)}" for m in METRICS]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(sys.argv[1])
