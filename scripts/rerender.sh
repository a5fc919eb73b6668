#!/usr/bin/env bash
# Re-render every committed report of the ELCRec claims from its committed records, after a change
# to the report or the statistics (run from the repository root):
#
#   bash scripts/rerender.sh                   # then `git diff reports/` shows what moved
#   BEAUTY_RUNS=/work/runs/elcrec-beauty bash scripts/rerender.sh   # the reproduction's live runs folder
#
# A study whose runs folder is absent here is re-rendered from its committed records alone; its
# progress snapshot and record file are then restored as committed (a report-only pass without the
# runs would rewrite them: every run "to do", the records in another order).
set -euo pipefail
PY=${PY:-python}
D=${DATA_DIR:-../shared/datasets}
$PY -m bench report reports/audit/records --claims bench/claims/elcrec.toml --format md,tex,csv,json --out reports/audit
$PY -m bench report reports/beauty-10ep --claims bench/claims/elcrec.toml --format md,tex,json --out reports/beauty-10ep/report
study() {  # experiment file, runs folder, report folder
  $PY -m bench reproduce "experiments/$1.toml" --report-only --out "$2" --data-dir "$D" > /dev/null
  if [ ! -d "$2" ]; then
    git checkout -- "$3/progress.md" 2> /dev/null || rm -f "$3/progress.md"  # untracked: this pass wrote it
    git checkout -- "$3/records/records.jsonl" 2> /dev/null || true  # never delete records
  fi
}
study elcrec-beauty "${BEAUTY_RUNS:-runs/elcrec-beauty}" reports/reproduction/beauty
study zoo-beauty runs/zoo-beauty reports/zoo/beauty
study zoo-quick-beauty runs/zoo-quick-beauty reports/zoo/beauty-quick
study cross-domain runs/cross-domain reports/cross-domain
study sensitivity-lastfm runs/sensitivity-lastfm reports/sensitivity
git status --short reports/
