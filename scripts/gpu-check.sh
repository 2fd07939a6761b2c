#!/bin/sh
# On a machine with NVIDIA GPUs: build (or take) the libtorch binary, run a small built-in
# sweep across all GPUs, and print the GPUs' busy share during it and the training step time
# of burn-tch against PyTorch eager on the same GPU; then a bf16 sweep of the `medium` preset,
# a bf16 sweep of SmolLM2-135M-Instruct (scripts/smollm2) across the GPUs, and SmolLM2 full
# fine-tuning against LoRA in one bf16 sweep, and the peak GPU memory of full fine-tuning with
# activation checkpointing off and on (the results should agree) and of LoRA over its frozen
# base held in bf16.
# Prepared for a short lease of a GPU machine; needs nvidia-smi, python3 and Rust.
# Usage: scripts/gpu-check.sh [SWEEP_BINARY]
set -eu
cd "$(dirname "$0")/.."

scripts/libtorch-env
. .venv-torch/sweep-tch.env
bin=${1:-}
if [ -z "$bin" ]; then
    cargo build --release --workspace --features sweep/tch
    bin=target/release/sweep
fi
bin=$(realpath "$bin")
gpus=$(nvidia-smi --query-gpu=index --format=csv,noheader | wc -l)
echo "== $gpus GPU(s): $(nvidia-smi --query-gpu=name --format=csv,noheader | sort | uniq -c | tr -s ' ')"

work=$(mktemp -d)
cat > "$work/gpu.toml" <<GRID
[sweep]
name = "gpu-check"
gpus_per_trial = 1
parallel = $gpus
max_attempts = 1

[grid]
learning_rate = [3e-4, 1e-3, 3e-3]
seed = [0, 1, 2]
steps = [100]

[trainer]
backend = "tch"
base_steps = 400
eval_harmful = 64
eval_benign = 48
eval_task = 50
GRID

# The GPUs' busy share, sampled every second while the sweep runs.
nvidia-smi --query-gpu=utilization.gpu --format=csv,noheader,nounits -l 1 > "$work/busy.txt" &
sampler=$!
start=$(date +%s)
(cd "$work" && "$bin" run gpu.toml --gpus auto) || status=$?
kill "$sampler" 2>/dev/null || true
echo "== sweep: $(( $(date +%s) - start )) s, exit ${status:-0}"
(cd "$work" && "$bin" status gpu-check | head -15)
awk '{ s += $1; n++ } END { if (n) printf "== GPU busy share during the sweep: %.0f %% (%d samples)\n", s / n, n }' "$work/busy.txt"
(cd "$work" && "$bin" export gpu-check --csv "$work/trials.csv")
python3 - "$work/trials.csv" <<'PY'
import csv, sys
rows = [r for r in csv.DictReader(open(sys.argv[1])) if r["status"] == "completed"]
on_gpu = [r for r in rows if r.get("metric_on_gpu") in ("1", "1.0")]
print(f"== {len(on_gpu)} of {len(rows)} completed trials computed on a GPU (on_gpu = 1)")
PY

echo "== step time on GPU 0, burn-tch:"
SWEEP_BENCH_BACKEND=tch SWEEP_BENCH_GPU=0 cargo bench --workspace --features sweep/tch --bench trainer | grep -E '^\| step, fixed|device'
echo "== step time on GPU 0, PyTorch eager:"
.venv-torch/bin/python -W ignore scripts/bench_pytorch.py --device cuda | grep -E '^\| step, fixed|model'

echo "== bf16, medium preset (27.6 M parameters): 3 trials"
cat > "$work/bf16.toml" <<GRID
[sweep]
name = "gpu-check-bf16"
gpus_per_trial = 1
parallel = $gpus
max_attempts = 2

[grid]
learning_rate = [1e-4, 3e-4, 1e-3]
steps = [100]

[trainer]
backend = "tch"
precision = "bf16"
model = { preset = "medium" }
base_steps = 400
base_lr = 1e-3
eval_harmful = 64
eval_benign = 48
eval_task = 50
GRID
start=$(date +%s)
(cd "$work" && "$bin" run bf16.toml --gpus auto) || status=$?
echo "== bf16 sweep: $(( $(date +%s) - start )) s, exit ${status:-0}"
(cd "$work" && "$bin" status gpu-check-bf16 | head -8)

echo "== SmolLM2-135M-Instruct, bf16 across the GPUs: lr x steps x EMA decay"
scripts/smollm2
repo=$(pwd)
cat > "$work/smollm2.toml" <<GRID
[sweep]
name = "gpu-check-smollm2"
gpus_per_trial = 1
parallel = $gpus
max_attempts = 2

[grid]
learning_rate = [1e-5, 3e-5, 1e-4, 3e-4]
steps = [0, 25, 100]
ema_decay = [0.0, 0.99]

[fixed]
batch_size = 16

[trainer]
backend = "tch"
precision = "bf16"
eval_harmful = 128
eval_benign = 64
eval_task = 64
max_new_tokens = 64

[trainer.model]
hf = "$repo/models/SmolLM2-135M-Instruct"
max_seq = 256
GRID
nvidia-smi --query-gpu=utilization.gpu --format=csv,noheader,nounits -l 1 > "$work/busy-smollm2.txt" &
sampler=$!
start=$(date +%s)
(cd "$work" && "$bin" run smollm2.toml --gpus auto) || status=$?
kill "$sampler" 2>/dev/null || true
echo "== SmolLM2 sweep: $(( $(date +%s) - start )) s, exit ${status:-0}"
awk '{ s += $1; n++ } END { if (n) printf "== GPU busy share during the SmolLM2 sweep: %.0f %% (%d samples)\n", s / n, n }' "$work/busy-smollm2.txt"
(cd "$work" && "$bin" report gpu-check-smollm2 --pareto | head -20)

echo "== SmolLM2-135M-Instruct, bf16: full fine-tuning against LoRA (r 8 and 64, attention and all)"
cat > "$work/lora.toml" <<GRID
[sweep]
name = "gpu-check-lora"
gpus_per_trial = 1
parallel = $gpus
max_attempts = 2

[grid]
learning_rate = [1e-4, 1e-3]
steps = [0, 50]
ema_decay = [0.0, 0.99]

[[zip]]
method       = ["full", "lora", "lora", "lora"]
lora_rank    = [0, 8, 64, 8]
lora_targets = ["none", "attention", "attention", "all"]

[fixed]
batch_size = 16

[trainer]
backend = "tch"
precision = "bf16"
eval_harmful = 64
eval_benign = 32
max_new_tokens = 32
save = "final"

[trainer.model]
hf = "$repo/models/SmolLM2-135M-Instruct"
max_seq = 256
GRID
start=$(date +%s)
(cd "$work" && "$bin" run lora.toml --gpus auto) || status=$?
echo "== LoRA sweep: $(( $(date +%s) - start )) s, exit ${status:-0}"
(cd "$work" && "$bin" report gpu-check-lora --pareto | head -20)
echo "== adapter directories written: $(find "$work" -name adapter_model.safetensors | wc -l)"

echo "== SmolLM2-135M-Instruct, bf16, batch 16 x 256: full fine-tuning with activation checkpointing off and on, LoRA r 8 on attention (its frozen base held in bf16)"
for case in full-false full-true lora-false; do
    method=${case%-*}
    ckpt=${case#*-}
    cat > "$work/ckpt-$case.toml" <<GRID
[sweep]
name = "gpu-check-ckpt-$case"
gpus_per_trial = 1
max_attempts = 1

[grid]
learning_rate = [1e-4]
steps = [20]

[fixed]
batch_size = 16
method = "$method"
$( [ "$method" = lora ] && printf 'lora_rank = 8\nlora_alpha = 16\nlora_targets = "attention"\n' || true )

[trainer]
backend = "tch"
precision = "bf16"
grad_checkpoint = $ckpt
eval_harmful = 16
eval_benign = 8
max_new_tokens = 16

[trainer.model]
hf = "$repo/models/SmolLM2-135M-Instruct"
max_seq = 256
GRID
    nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -i 0 -lms 200 > "$work/mem-$case.txt" &
    sampler=$!
    start=$(date +%s)
    (cd "$work" && "$bin" run "ckpt-$case.toml" --gpus auto) || status=$?
    kill "$sampler" 2>/dev/null || true
    peak=$(sort -n "$work/mem-$case.txt" | tail -1)
    echo "== $method, grad_checkpoint = $ckpt: $(( $(date +%s) - start )) s, peak GPU memory ${peak:-?} MiB, exit ${status:-0}"
    (cd "$work" && "$bin" export "gpu-check-ckpt-$case" --csv - | cut -d, -f1-3,10-)
done
