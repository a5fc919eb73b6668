#!/usr/bin/env bash
# The GPU checks as one prepared command for a lent GPU machine (README: "On a GPU"), in the order
# of their value: the CUDA tests, the paired per-epoch cost and GPU memory of ELCRec vs ICLRec on
# Beauty (`bench cost`: the paper's 22.5% and 11.35% are GPU claims), then the paper protocol.
#
#   bash scripts/gpu.sh prepare        here: fills .devkit/ (git ignores it: never committed) with the
#                                      authors' Beauty files from ../shared and the faiss-cpu wheel
#                                      that the GPU image lacks (it has no network)
#   bash scripts/gpu.sh                there (device tool: carry [".devkit"], timeout_s 600): the CUDA
#                                      tests, the paired cost benchmark (COST_ROUNDS rounds, default 6),
#                                      then the paper protocol for ELCRec and ICLRec on Beauty, seed 1,
#                                      within the call's time
#   bash scripts/gpu.sh unpack DIR     here: appends the cost records a call brought back (DIR) to
#                                      reports/reproduction/beauty/cost/ (the report judges the cost
#                                      claims on the latest benchmark) and puts the runs into
#                                      .devkit/runs, so that the next call resumes runs the limit stopped
#
# A run stopped by the time limit is a failure record ("timeout") with its state saved at its last
# finished epoch; the next call resumes it and skips finished runs (same config hash and seed).
# DEVICE (default cuda), COST_ROUNDS and LIMIT_S (default 540: the call's 600 s less a minute) may be
# overridden, e.g. for a dry run of the whole flow on a CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
KIT=.devkit
RUNS=$KIT/runs/beauty-gpu

prepare() {
  local shared=${INTENTBENCH_SHARED:-../shared}
  mkdir -p "$KIT/shared/datasets" "$KIT/shared/checkpoints" "$KIT/shared/reference/fixtures" "$KIT/whl"
  cp "$shared/datasets/Beauty.txt" "$KIT/shared/datasets/"
  cp "$shared"/checkpoints/*-Beauty-1.pt "$KIT/shared/checkpoints/"
  cp "$shared"/reference/fixtures/* "$KIT/shared/reference/fixtures/"
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 -d "$KIT/whl" "faiss-cpu==1.15.1"
  du -sh "$KIT"
}

unpack() {
  local from=$1 cost=reports/reproduction/beauty/cost/records.jsonl
  if [ -s "$from/cost-gpu/records.jsonl" ]; then
    cat "$from/cost-gpu/records.jsonl" >> "$cost"
    echo "appended $(wc -l < "$from/cost-gpu/records.jsonl") cost record(s) to $cost"
  fi
  mkdir -p "$RUNS/state"
  [ -e "$from/beauty-gpu.tgz" ] || return 0
  tar -xzf "$from/beauty-gpu.tgz" -C "$RUNS"
  if compgen -G "$from/*.pt" > /dev/null; then cp "$from"/*.pt "$RUNS/state/"; fi
  ls -R "$RUNS" | head -20
}

on_gpu() {
  local t0=$SECONDS out=${OUT:?OUT must name the folder whose files come back} device=${DEVICE:-cuda}
  if compgen -G "$KIT/whl/*.whl" > /dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$KIT"/whl/*.whl
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
  fi
  export PYTHONUNBUFFERED=1 INTENTBENCH_SHARED=$KIT/shared
  local data=$KIT/shared/datasets
  (nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || echo "no nvidia-smi") | tee "$out/gpu.txt"
  python3 -c "import torch, faiss; print('torch', torch.__version__, 'faiss', faiss.__version__)" | tee -a "$out/gpu.txt"
  python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py 2>&1 | tee "$out/test_cuda.log"
  # the paired benchmark: one epoch of each model in turn (ABAB...), time and GPU memory per epoch
  python3 -m bench cost --device "$device" --models elcrec,iclrec --dataset beauty --data-dir "$data" \
    --rounds "${COST_ROUNDS:-6}" --out "$out/cost-gpu" 2>&1 | tee "$out/cost-gpu.log" || true
  local budget=$((${LIMIT_S:-540} - (SECONDS - t0)))  # what is left for the protocol runs
  if [ "$budget" -lt 60 ]; then echo "no time left for the paper protocol (${budget} s)"; return; fi
  echo "paper protocol: at most ${budget} s per run"
  python3 -m bench run --models elcrec,iclrec --datasets beauty --seeds 1 --profile paper --device "$device" \
    --jobs 2 --timeout "$budget" --data-dir "$data" --out "$RUNS" 2> "$RUNS.progress.log" || true
  python3 -m bench report "$RUNS" --format md --out "$RUNS/report" || true
  tar -czf "$out/beauty-gpu.tgz" -C "$RUNS" --exclude=state .
  if compgen -G "$RUNS/state/*.pt" > /dev/null; then cp "$RUNS"/state/*.pt "$out/"; fi  # ~13 MB each
  tail -5 "$RUNS.progress.log"
}

case "${1:-run}" in
  prepare) prepare ;;
  unpack) unpack "${2:?unpack needs the folder of the fetched files}" ;;
  run) mkdir -p "$RUNS"; on_gpu ;;
  *) echo "usage: scripts/gpu.sh [prepare | run | unpack DIR]" >&2; exit 2 ;;
esac
