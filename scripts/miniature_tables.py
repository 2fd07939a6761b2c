"""The tables of docs/reproduction.md's miniature sections, computed from the checked-in
exports in docs/results (scripts/miniature-results runs it). Standard library only.

    python3 scripts/miniature_tables.py docs/results
"""

import csv
import os
import statistics
import sys

out = sys.argv[1] if len(sys.argv) > 1 else "docs/results"


def rows(name):
    with open(os.path.join(out, name)) as f:
        return list(csv.DictReader(f))


def num(text):
    return float(text) if text not in ("", None) else None


def find(table, **params):
    """The one row whose parameters equal these (compared as numbers)."""
    hits = [r for r in table
            if all(num(r[f"param_{k}"]) == float(v) for k, v in params.items())]
    if len(hits) != 1:
        raise SystemExit(f"{len(hits)} rows for {params}")
    return hits[0]


def mean(r, m):
    return num(r[f"metric_{m}_mean"])


def sd(r, m):
    return num(r[f"metric_{m}_std"])


def cell(r, *extra):
    """unsafe ± std / utility [/ extra means]."""
    text = f"{mean(r, 'unsafe_rate'):.3f} ± {sd(r, 'unsafe_rate'):.3f} / {mean(r, 'utility'):.2f}"
    for m in extra:
        text += f" / {mean(r, m):.2f}"
    return text


def header(*cols):
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))


def line(*cols):
    print("| " + " | ".join(str(c) for c in cols) + " |")


print("## paper-aggregate.csv: unsafe_rate ± std / utility, by cell\n")
paper = rows("paper-aggregate.csv")
header("lr", "bs", "steps", "raw", "EMA 0.9", "EMA 0.99", "raw over-refusal",
       "raw retained facts / how-to")
base = find(paper, steps=0)
line("base", "", 0, cell(base), "", "", f"{mean(base, 'over_refusal_rate'):.3f}",
     f"{mean(base, 'retained_facts'):.2f} / {mean(base, 'retained_howto'):.2f}")
for lr in (3e-4, 1e-3, 3e-3):
    for bs in (4, 16):
        for steps in (25, 50, 100):
            at = {e: find(paper, learning_rate=lr, batch_size=bs, steps=steps, ema_decay=e)
                  for e in (0, 0.9, 0.99)}
            raw = at[0]
            line(lr, bs, steps, cell(raw), cell(at[0.9]), cell(at[0.99]),
                 f"{mean(raw, 'over_refusal_rate'):.3f}",
                 f"{mean(raw, 'retained_facts'):.2f} / {mean(raw, 'retained_howto'):.2f}")

print("\n## paper-aggregate.csv: unsafe, coherent compliance and garbled answers\n")
header("lr", "bs", "steps", "EMA", "unsafe", "complies", "degenerate", "utility")
line("base", "", 0, "", *(f"{mean(base, m):.3f}" for m in
                          ("unsafe_rate", "complies_rate", "degenerate_rate", "utility")))
for lr, bs, steps, e in [(3e-4, 16, 50, 0), (3e-4, 16, 100, 0), (1e-3, 16, 100, 0),
                         (1e-3, 16, 100, 0.99), (3e-3, 16, 25, 0), (3e-3, 16, 100, 0),
                         (3e-3, 16, 100, 0.99), (3e-3, 4, 100, 0)]:
    r = find(paper, learning_rate=lr, batch_size=bs, steps=steps, ema_decay=e)
    line(lr, bs, steps, e or "",
         *(f"{mean(r, m):.3f} ± {sd(r, m):.3f}" for m in
           ("unsafe_rate", "complies_rate", "degenerate_rate")),
         f"{mean(r, 'utility'):.2f}")

print("\n## interpolation-aggregate.csv: unsafe ± std / utility / retained facts\n")
interp = rows("interpolation-aggregate.csv")
header("steps", "α 0.25", "α 0.5", "α 0.75", "α 1 (the raw model)", "EMA 0.99")
for steps in (25, 50, 100):
    cells = [cell(find(interp, steps=steps, interpolation=a, ema_decay=0), "retained_facts")
             for a in (0.25, 0.5, 0.75, 1)]
    ema = find(interp, steps=steps, interpolation=1, ema_decay=0.99)
    line(steps, *cells, cell(ema, "retained_facts"))

print("\n## equal-data-aggregate.csv: unsafe ± std / utility, and what else moves\n")
equal = rows("equal-data-aggregate.csv")
header("lr", "batch × steps", "no warmup", "warmup 10", "complies (no warmup)",
       "degenerate", "eval_loss")
for lr in (3e-4, 3e-3):
    for bs, steps in ((4, 400), (16, 100), (64, 25)):
        cold = find(equal, learning_rate=lr, batch_size=bs, steps=steps, warmup=0)
        warm = find(equal, learning_rate=lr, batch_size=bs, steps=steps, warmup=10)
        line(lr, f"{bs} × {steps}", cell(cold), cell(warm),
             f"{mean(cold, 'complies_rate'):.2f}", f"{mean(cold, 'degenerate_rate'):.2f}",
             f"{mean(cold, 'eval_loss'):.4f}")

print("\n## controls-aggregate.csv (replicates = seed with base_seed): unsafe ± std / utility\n")
controls = rows("controls-aggregate.csv")
header("lr", "steps", "raw", "raw, replay 0.1", "EMA 0.99", "EMA 0.99, replay 0.1")
bases = find(controls, steps=0, learning_rate=3e-4)
line("", "0 (the bases)", cell(bases), "", "", "")
for lr in (3e-4, 3e-3):
    for steps in (25, 50, 100):
        line(lr, steps, *(cell(find(controls, learning_rate=lr, steps=steps, ema_decay=e,
                                    refusal_replay=rep))
                          for e, rep in ((0, 0), (0, 0.1), (0.99, 0), (0.99, 0.1))))

print("\n## controls-trials.csv: per base (base_seed 0 / 1 / 2), unsafe_rate and over-refusal\n")
trials = rows("controls-trials.csv")
header("configuration", "unsafe_rate", "over_refusal_rate", "utility")


def per_base(label, **params):
    hits = sorted((r for r in trials
                   if all(num(r[f"param_{k}"]) == float(v) for k, v in params.items())),
                  key=lambda r: num(r["param_base_seed"]))
    got = lambda m: " / ".join(f"{num(r['metric_' + m]):.3f}" for r in hits)
    line(label, got("unsafe_rate"), got("over_refusal_rate"), got("utility"))


per_base("the bases", steps=0, learning_rate=3e-4)
for lr in (3e-4, 3e-3):
    for e, rep in ((0, 0), (0, 0.1), (0.99, 0), (0.99, 0.1)):
        per_base(f"lr {lr}, 100 steps, EMA {e}, replay {rep}", learning_rate=lr, steps=100,
                 ema_decay=e, refusal_replay=rep)
