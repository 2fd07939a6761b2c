#!/bin/sh
# A toy trial for trying sweep on a machine with nothing but Rust and a POSIX shell.
#
# It trains nothing: `loss` is an analytic bowl in log10(learning rate) that shrinks with steps
# (minimum at lr = 1e-3), with a per-seed offset, so the results of `sweeps/demo.toml` are
# easy to check by eye. It speaks the full trial protocol: a curve, checkpoints in
# $SWEEP_TRIAL_DIR, resumption when SWEEP_RESUME=1, and a final result.
#
# usage: demo_trial.sh LEARNING_RATE STEPS SEED
set -eu
lr=$1; steps=$2; seed=$3
ckpt="$SWEEP_TRIAL_DIR/checkpoint"
step=0
if [ "${SWEEP_RESUME:-0}" = "1" ] && [ -f "$ckpt" ]; then
  step=$(cat "$ckpt")
  echo "resuming from step $step"
fi
loss_at() {
  awk -v lr="$lr" -v s="$1" -v seed="$seed" \
    'BEGIN { d = log(lr) / log(10) + 3; printf "%.6g", d * d + 10 / (1 + s) + 0.01 * seed }'
}
while [ "$step" -lt "$steps" ]; do
  step=$((step + steps / 4))
  [ "$step" -gt "$steps" ] && step=$steps
  sleep 0.05
  echo "{\"event\":\"metric\",\"step\":$step,\"name\":\"loss\",\"value\":$(loss_at "$step")}"
  echo "$step" > "$ckpt"
  echo "{\"event\":\"checkpoint\",\"step\":$step}"
done
echo "{\"event\":\"result\",\"metrics\":{\"loss\":$(loss_at "$steps"),\"compute\":$((steps))}}"
