#!/usr/bin/env bash
# What a lent GPU machine checks and measures for docs/benchmarks.md and docs/reproduction.md, in one go,
# most important first, each part with its own time limit so a slow part cannot starve the rest:
#
#   bench/gpu_check.sh OUT STAGES CELL...
#   bench/gpu_check.sh "$OUT" 3 1-layer/vae-k1 1-layer/iwae-k5 2-layer/vae-k1
#
# 1. tests/test_steps.py: CUDA graph replays compute what eager steps do, bit for bit (and the CUDA runs
#    with and without graphs, and a resumed graphed run, are identical; the conv model's eager CUDA run
#    repeats bit for bit); then bench/graph_check.py: whether the conv model's replays are its eager steps
#    with cuDNN's deterministic kernels (if so, it may join steps.GRAPHED_MODELS);
# 2. bench/bench_steps.py --device cuda: steps per second, plain eager loop vs vaelab eager vs graphed
#    (and, with COMPILE=1, tests/test_steps.py's compiled runs, then `vaelab train --compile`'s step with
#    the fused and with the compiled Adam, the latter what it runs on a GPU, then
#    bench/kernels_per_step.py: kernels and GPU time per step);
# 3. the CELLs on the first STAGES stages of the paper's schedule (`vaelab reproduce iwae CELL`), scored
#    with K = 5,000; their logs, configs, metrics and scores are packed into OUT/cells.tgz after each cell.
#    With JOBS=N, all the CELLs in one `vaelab reproduce --jobs N` (N processes sharing the GPU), packed
#    every 30 s, so what a time limit cuts off still comes back.
# Runs under the machine's python3 (PyTorch with CUDA); tomli-w, which it lacks, comes as a wheel in .whl/.
set -uo pipefail
out=${1:?OUT} stages=${2:?STAGES}
shift 2
here=$(pwd)
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$here/src PYTHONUNBUFFERED=1
printf '#!/bin/sh\nexec python3 -m vaelab "$@"\n' > /tmp/vaelab && chmod +x /tmp/vaelab
{ nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
  python3 -c 'import torch; print("torch", torch.__version__, torch.version.cuda, torch.cuda.get_device_name())'
  nproc; } 2>&1 | tee "$out/machine.txt"

if ! timeout 240 python3 -m pytest -q -p no:cacheprovider -rs -k "not compiled" tests/test_steps.py 2>&1 \
    | tee "$out/test_steps.txt"
then
  echo "graph tests failed: the cells run eagerly (VAELAB_CUDA_GRAPHS=0)"
  export VAELAB_CUDA_GRAPHS=0
fi
timeout 60 python3 bench/graph_check.py --model conv 2>&1 | tee "$out/graph_check.txt"  # may conv be graphed?
timeout 150 python3 bench/bench_steps.py --device cuda --steps 4000 2>&1 | tee "$out/bench_steps.txt"
if [ "${COMPILE:-0}" = 1 ]; then  # torch.compile: compiling takes ~half a minute a cell and loop
  # compiled runs (objective and Adam) with and without graphs, and stopped and resumed, bit for bit
  timeout 300 python3 -m pytest -q -p no:cacheprovider -rs -k compiled tests/test_steps.py 2>&1 \
    | tee "$out/test_steps_compiled.txt"
  timeout 240 python3 bench/bench_steps.py --device cuda --steps 3000 --samples 1 50 --compile 2>&1 \
    | grep -v -i warn | tee "$out/bench_compile.txt"
  timeout 100 python3 bench/kernels_per_step.py 2>&1 | grep -v -i warn | tee "$out/kernels.txt"
fi

cells=$(mktemp -d)
pack() { (cd "$cells" && tar czf "$out/cells.tgz.part" --exclude='*.safetensors' --exclude='figures' . \
          && mv "$out/cells.tgz.part" "$out/cells.tgz"); }
if [ "${JOBS:-1}" -gt 1 ]; then  # all the CELLs at once, JOBS processes sharing the GPU; packed every 30 s
  while sleep 30; do pack; done &
  packer=$!
  start=$(date +%s)
  /tmp/vaelab reproduce iwae "$@" --stages "$stages" --out "$cells" --device cuda --quiet --jobs "$JOBS" \
    > "$cells/reproduce.log" 2>&1
  echo "$*: $(( $(date +%s) - start )) s, train and score, --jobs $JOBS" | tee -a "$out/cells.txt"
  kill "$packer"
  tail -30 "$cells/reproduce.log"
  pack
  exit 0
fi
for cell in "$@"; do
  start=$(date +%s)
  /tmp/vaelab reproduce iwae "$cell" --stages "$stages" --out "$cells" --device cuda --quiet \
    > "$cells/${cell/\//-}.log" 2>&1
  echo "$cell: $(( $(date +%s) - start )) s, train and score" | tee -a "$out/cells.txt"
  tail -6 "$cells/${cell/\//-}.log"
  pack
done
