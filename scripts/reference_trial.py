#!/usr/bin/env python3
"""A reference trial for sweep's protocol (docs/protocol.md), standard library only.

Copy it and put your training where `train_step` is. It shows the four things a long trial
needs to get right:

- every line flushed as it is printed (under sweep stdout is a pipe, which Python buffers);
- several curves in one `metric` line, as `wandb.log({...})` takes them;
- a checkpoint written atomically every `checkpoint_every` steps and when SIGTERM arrives (a
  timeout, Ctrl-C, a lost orchestrator), announced with a `checkpoint` line;
- resuming from that checkpoint when `SWEEP_RESUME` is 1, so a retried attempt ends with the
  numbers an uninterrupted one would have (the state includes the random generator's).

The "model" is a least-squares fit of y = 3x - 1 by SGD on seeded synthetic data: cheap,
deterministic by seed, and enough to see a loss fall. Parameters (all optional):
`learning_rate` (0.05), `steps` (200), `seed` (0), `checkpoint_every` (20), and
`step_seconds` (0; a pause per step, so a test can interrupt a run part-way).
"""

import json
import os
import random
import signal
import sys
import time


def emit(**event):
    """One protocol line, flushed at once."""
    print(json.dumps(event), flush=True)


def save(path, state):
    """Writes the checkpoint so that a kill at any moment leaves the old one or the new one."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    emit(event="checkpoint", step=state["step"])


def train_step(state, rng, lr):
    """One SGD step on a fresh example; returns the example's squared error."""
    x = rng.uniform(-1.0, 1.0)
    y = 3.0 * x - 1.0 + rng.gauss(0.0, 0.1)
    error = state["w"] * x + state["b"] - y
    state["w"] -= lr * 2 * error * x
    state["b"] -= lr * 2 * error
    return error * error


def main():
    params = json.loads(os.environ.get("SWEEP_PARAMS", "{}"))
    lr = float(params.get("learning_rate", 0.05))
    steps = int(params.get("steps", 200))
    seed = int(params.get("seed", 0))
    every = int(params.get("checkpoint_every", 20))
    pause = float(params.get("step_seconds", 0))
    trial_dir = os.environ.get("SWEEP_TRIAL_DIR", ".")
    path = os.path.join(trial_dir, "checkpoint.json")

    state = {"step": 0, "w": 0.0, "b": 0.0, "rng": None}
    rng = random.Random(seed)
    if os.environ.get("SWEEP_RESUME") == "1" and os.path.exists(path):
        with open(path) as f:
            state = json.load(f)
        version, internal, gauss = state["rng"]
        rng.setstate((version, tuple(internal), gauss))
        print(f"resumed at step {state['step']}", file=sys.stderr, flush=True)

    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))

    running = None
    while state["step"] < steps:
        loss = train_step(state, rng, lr)
        state["step"] += 1
        running = loss if running is None else 0.9 * running + 0.1 * loss
        if state["step"] % 10 == 0:
            emit(event="metric", step=state["step"],
                 metrics={"train_loss": running, "w": state["w"], "b": state["b"]})
        if state["step"] % every == 0 or stop:
            state["rng"] = rng.getstate()
            save(path, state)
        if stop:
            # Checkpointed above: exit before the grace period ends in SIGKILL.
            print(f"stopped by SIGTERM at step {state['step']}", file=sys.stderr, flush=True)
            sys.exit(143)
        time.sleep(pause)

    error = abs(state["w"] - 3.0) + abs(state["b"] + 1.0)
    # A string among the metrics is kept out of the numbers with a note; it does not fail
    # the trial.
    emit(event="result", metrics={"fit_error": error, "w": state["w"], "b": state["b"],
                                  "note": "fit by SGD"})


if __name__ == "__main__":
    main()
