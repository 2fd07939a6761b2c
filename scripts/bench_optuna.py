"""Optuna's side of scripts/bench-optuna: N trivial subprocess trials (`sh t.sh X`, which
prints a sweep result line) through GridSampler over x = 0..N-1, an SQLite storage, JOBS
threads; prints the seconds from the study's start to its last trial and the trials run.

    python scripts/bench_optuna.py N JOBS STORAGE_FILE
"""

import json
import subprocess
import sys
import time

import optuna


def main() -> None:
    n, jobs, db = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    start = time.perf_counter()
    study = optuna.create_study(
        storage=f"sqlite:///{db}",
        study_name="t",
        sampler=optuna.samplers.GridSampler({"x": list(range(n))}, seed=0),
    )

    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_categorical("x", list(range(n)))
        out = subprocess.run(
            ["sh", "t.sh", str(x)], capture_output=True, text=True, check=True
        ).stdout
        return json.loads(out.splitlines()[-1])["metrics"]["x"]

    study.optimize(objective, n_trials=n, n_jobs=jobs)
    elapsed = time.perf_counter() - start
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    # GridSampler under several threads may run a point twice; every point must have run.
    assert len({t.params["x"] for t in complete}) == n, "not every grid point completed"
    print(f"{elapsed:.3f} {len(complete)}")


if __name__ == "__main__":
    main()
