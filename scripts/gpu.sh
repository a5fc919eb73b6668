#!/usr/bin/env bash
# The GPU part of issue #3 as one prepared command for a lent GPU machine (README: "On a GPU").
#
#   bash scripts/gpu.sh prepare        here: fills .devkit/ (git ignores it: never committed) with the
#                                      authors' Beauty files from ../shared and the faiss-cpu wheel
#                                      that the GPU image lacks (it has no network)
#   bash scripts/gpu.sh                there (device tool: carry [".devkit"], timeout_s 600): the CUDA
#                                      tests, the GPU epoch benchmark, then the paper protocol for
#                                      ELCRec and ICLRec on Beauty, seed 1, within the call's time
#   bash scripts/gpu.sh unpack DIR     here: puts the files a call brought back (DIR) into .devkit/runs,
#                                      so that the next call resumes runs that the time limit stopped
#
# A run stopped by the time limit is a failure record ("timeout") with its state saved at its last
# finished epoch; the next call resumes it and skips finished runs (same config hash and seed).
# DEVICE (default cuda), PERF_MODELS and LIMIT_S (default 540: the call's 600 s less a minute) may be
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
  local from=$1
  mkdir -p "$RUNS/state"
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
  python3 -m bench perf --device "$device" --data-dir "$data" --shared "$KIT/shared" \
    --models "${PERF_MODELS:-elcrec,iclrec,sasrec,cl4srec}" --recipe-batches 0 --out "$out/perf-gpu.json" 2>&1 \
    | tee "$out/perf-gpu.log"
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
