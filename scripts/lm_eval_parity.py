"""lm-evaluation-harness's per-item log-likelihoods and verdicts on sweep's benchmark
fixtures, scored on a tiny random Llama, for crates/trainer/tests/lm_eval_parity.rs:

    python scripts/lm_eval_parity.py OUT_DIR    # run by scripts/lm-eval-parity, in .venv-torch

or, with a real checkpoint and the public files of scripts/benchmarks, on N items of
HellaSwag and ARC-Easy spread over each file (every k-th), timed:

    python scripts/lm_eval_parity.py OUT_DIR MODEL_DIR N

Writes OUT_DIR/model/ (a Hugging Face directory, as scripts/hf_parity.py makes them), one
lm-eval task YAML per fixture reading it as a local JSON file, and OUT_DIR/reference.json:
for each benchmark, each item's `doc_id`, its choices' log-likelihoods, `acc` and `acc_norm`
as lm-eval computed them. The YAMLs are lm-eval's own tasks (hellaswag, arc_easy, piqa and
the MMLU template) with only the data source changed; HellaSwag keeps lm-eval's
`process_docs`.
"""

import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "crates/trainer/tests/fixtures/benchmarks"

# (task, fixture, the task's fields besides its data source)
TASKS = {
    "hellaswag": """process_docs: !function utils.process_docs
doc_to_text: "{{query}}"
doc_to_target: "{{label}}"
doc_to_choice: "choices"
""",
    "arc_easy": """doc_to_text: "Question: {{question}}\\nAnswer:"
doc_to_target: "{{choices.label.index(answerKey)}}"
doc_to_choice: "{{choices.text}}"
""",
    # The flat form of ARC that the wheel's request dumps rebuild: {question, choices, gold}.
    "arc_challenge": """doc_to_text: "Question: {{question}}\\nAnswer:"
doc_to_target: "{{gold}}"
doc_to_choice: "{{choices}}"
""",
    "piqa": """doc_to_text: "Question: {{goal}}\\nAnswer:"
doc_to_target: label
doc_to_choice: "{{[sol1, sol2]}}"
""",
    "mmlu": """description: "The following are multiple choice questions (with answers) about {{subject.replace('_', ' ')}}.\\n\\n"
doc_to_text: "{{question.strip()}}\\nA. {{choices[0]}}\\nB. {{choices[1]}}\\nC. {{choices[2]}}\\nD. {{choices[3]}}\\nAnswer:"
doc_to_choice: ["A", "B", "C", "D"]
doc_to_target: answer
""",
}


def task_files(tasks_dir, files):
    """One task YAML per `name: (file, fields)` of `files`."""
    import lm_eval

    tasks_dir.mkdir(parents=True)
    # lm-eval's own HellaSwag preprocessing, next to the YAML that names it.
    utils = Path(lm_eval.__file__).parent / "tasks/hellaswag/utils.py"
    (tasks_dir / "utils.py").write_text(utils.read_text())
    for task, (file, fields) in files.items():
        (tasks_dir / f"sweep_{task}.yaml").write_text(
            f"task: sweep_{task}\n"
            "dataset_path: json\n"
            f"dataset_kwargs:\n  data_files:\n    test: {file}\n"
            "output_type: multiple_choice\n"
            "test_split: test\n"
            + fields
            + "metric_list:\n  - metric: acc\n  - metric: acc_norm\n"
        )


def main(out, model_dir=None, items=None):
    out = Path(out).resolve()
    os.environ.update(HF_HOME=str(out / "hf-home"), HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    if model_dir is None:
        sys.path.insert(0, str(ROOT / "scripts"))
        import torch
        from hf_parity import CASES, tokenizer_files

        # Its own initialisation (no raised norm, unlike hf_parity.py's), so log-likelihoods
        # are of a language model's size (tens to hundreds of nats), where f32 keeps 1e-4.
        torch.manual_seed(0)
        model = CASES["llama-gqa-tied"]().eval()
        model.save_pretrained(out / "model")
        tokenizer_files(out / "model")
        model_dir = out / "model"
        files = {task: (FIXTURES / f"{task}.jsonl", fields) for task, fields in TASKS.items()}
    else:
        model_dir = Path(model_dir).resolve()
        # The public files are HellaSwag's own fields and ARC in the flat form.
        subset = out / "subset"
        subset.mkdir(parents=True)
        files = {}
        for task, fields in [("hellaswag", TASKS["hellaswag"]), ("arc_easy", TASKS["arc_challenge"])]:
            lines = (ROOT / "benchmarks" / f"{task}.jsonl").read_text(encoding="utf-8").splitlines(True)
            step = max(1, len(lines) // int(items))
            (subset / f"{task}.jsonl").write_text("".join(lines[::step][: int(items)]), encoding="utf-8")
            files[task] = (subset / f"{task}.jsonl", fields)
    task_files(out / "tasks", files)

    import time

    import lm_eval
    import torch
    from lm_eval.tasks import TaskManager

    from lm_eval.models.huggingface import HFLM

    lm = HFLM(pretrained=str(model_dir), dtype="float32", batch_size=8, device="cpu")
    # Timed from here: building the tasks from the files, tokenising and scoring.
    started = time.perf_counter()
    results = lm_eval.simple_evaluate(
        model=lm,
        tasks=[f"sweep_{t}" for t in files],
        task_manager=TaskManager(include_path=str(out / "tasks")),
        batch_size=8,
        device="cpu",
        log_samples=True,
    )
    seconds = time.perf_counter() - started
    reference = {"model": str(model_dir), "seconds": seconds, "threads": torch.get_num_threads(), "tasks": {}}
    for task in files:
        samples = sorted(results["samples"][f"sweep_{task}"], key=lambda s: s["doc_id"])
        reference["tasks"][task] = [
            {
                "doc_id": s["doc_id"],
                "loglikelihoods": [float(r[0][0]) for r in s["resps"]],
                "acc": s["acc"],
                "acc_norm": s["acc_norm"],
            }
            for s in samples
        ]
        n = len(samples)
        acc_norm = sum(s["acc_norm"] for s in samples) / n
        print(f"lm-eval sweep_{task}: {n} items, acc_norm {acc_norm:.3f}")
    print(f"lm-eval: {seconds:.1f} s (tasks from the files, tokenising and scoring)")
    (out / "reference.json").write_text(json.dumps(reference) + "\n")


if __name__ == "__main__":
    main(*sys.argv[1:])
