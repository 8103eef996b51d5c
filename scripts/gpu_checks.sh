#!/usr/bin/env bash
# Everything the GPU path needs checked, in one command on a lent GPU machine (its own torch
# with CUDA; hydra, omegaconf, optuna and the launchers carried as wheels in .whl/):
#   v7's rows, the video's code and the repository's, and nanoGPT's config (python -m
#   shakegpt.tools.gpu_race -> docs/gpu_race.md and docs/records/gpu_v7*.json, about 7 minutes),
#   a small compiled bf16 checkpoint to sample on a CPU afterwards, the GPU-only tests
#   (pytest -m gpu) and then the whole suite, in what time is left of BUDGET seconds.
# Results go to $OUT (default out/gpu): docs/gpu_race.md, the runs without their checkpoints,
# the small checkpoint and logs.tgz, rewritten after every step so that a cut-off run still
# returns what it did.
set -u
OUT=${OUT:-out/gpu}
BUDGET=${BUDGET:-590}
LOGS=$(mktemp -d)
mkdir -p "$OUT"
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD/src:$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$LOGS/gpu.txt"
python3 -c 'import torch, lightning; print("torch", torch.__version__, "lightning", lightning.__version__)' | tee -a "$LOGS/gpu.txt"

step() {  # step NAME SECONDS COMMAND...: run with a time limit, log to $OUT/NAME.log, print its rc
  local name=$1 limit=$2; shift 2
  local start=$SECONDS
  timeout "$limit" "$@" > "$LOGS/$name.log" 2>&1
  echo "== $name: rc $? after $((SECONDS - start)) s" | tee -a "$LOGS/steps.txt"
  tail -n 25 "$LOGS/$name.log"
  tar czf "$OUT/logs.tgz" -C "$LOGS" .
}

step gpu_race 450 python3 -m shakegpt.tools.gpu_race
cp docs/gpu_race.md "$OUT/" 2>/dev/null
cp -r docs/records "$OUT/" 2>/dev/null

step small_ckpt 80 python3 train.py trainer=gpu model=v7 model.n_embd=32 model.n_head=4 model.n_layer=2 \
  data.block_size=32 data.batch_size=32 trainer.max_steps=300 trainer.val_check_interval=100 data.eval_iters=20 \
  hydra.run.dir=runs/gpu_small
cp runs/gpu_small/checkpoints/last.ckpt "$OUT/gpu_small.ckpt" 2>/dev/null
tar czf "$OUT/runs.tgz" --exclude='*.ckpt' runs/gpu_race runs/gpu_small 2>/dev/null
step sample_gpu 40 python3 sample.py ckpt=runs/gpu_race/v7/checkpoints/best.ckpt device=cuda "prompt=ROMEO:" max_new_tokens=300

step pytest_gpu 150 python3 -m pytest -m gpu -p no:cacheprovider -q -rs
step pytest_all $((BUDGET - SECONDS > 10 ? BUDGET - SECONDS : 10)) python3 -m pytest -n 16 -p no:cacheprovider -q -rfs --tb=short --deselect tests/test_gpu.py
cat "$LOGS/steps.txt"
