#!/usr/bin/env bash
# Train and score IWAE Table 1 cells from their presets, one after another, resuming whatever was cut off.
#
#   bench/table1_runs.sh OUT STAGES CELL...
#   bench/table1_runs.sh runs/table1-short 3 1-layer/vae-k1 1-layer/iwae-k5 2-layer/vae-k1
#   bench/table1_runs.sh runs/table1 8 1-layer/vae-k1            # the full schedule (3,280 passes)
#
# Each CELL trains into OUT/<layers>-<cell> (`vaelab train --preset iwae/CELL --stages STAGES`), or resumes
# there bit for bit if a checkpoint exists (also to extend a shorter schedule), then is scored with the
# paper's 5,000 importance samples (`vaelab eval --iw-k 5000 --no-judge`) unless eval.json already holds
# those weights' K=5000 score. Logs go to OUT/<layers>-<cell>.log. Run it again after any interruption;
# `bench/table1.py OUT/*` then prints the table for docs/reproduction.md. VAELAB (default: vaelab on PATH,
# else .venv/bin/vaelab) names the command.
set -euo pipefail
if [ $# -lt 3 ]; then
  sed -n '2,13p' "$0" >&2
  exit 2
fi
out=$1 stages=$2
shift 2
vaelab=${VAELAB:-$(command -v vaelab || echo .venv/bin/vaelab)}
mkdir -p "$out"
for cell in "$@"; do
  run=$out/${cell/\//-}
  log=$run.log
  echo "== $cell -> $run ($(date -u +%FT%TZ))" >> "$log"
  if [ -f "$run/checkpoint.safetensors" ]; then
    "$vaelab" train --resume "$run" --stages "$stages" --quiet >> "$log" 2>&1
  else
    "$vaelab" train --preset "iwae/$cell" --stages "$stages" --out "$run" --quiet >> "$log" 2>&1
  fi
  python=$(dirname "$vaelab")/python
  [ -x "$python" ] || python=python3
  scored=$("$python" -c 'import sys
from vaelab.checkpoint import load_run
from vaelab.evalfile import read_eval
r = read_eval(load_run(sys.argv[1]))
print(int(r is not None and r.iw_k >= 5000))' "$run")
  if [ "$scored" != 1 ]; then
    start=$(date +%s)
    "$vaelab" eval "$run" --iw-k 5000 --no-judge >> "$log" 2>&1
    echo "eval seconds: $(( $(date +%s) - start ))" >> "$log"
  fi
done
