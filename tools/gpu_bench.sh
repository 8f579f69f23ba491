#!/usr/bin/env bash
# GPU bench from a bare machine (torch + transformers, no diffusers, no network), in under 8 minutes.
#   tools/fetch_wheels.sh            # once, on a connected machine: wheels into tools/wheels/
#   tools/gpu_bench.sh [args]        # on the GPU machine, from the repository root; args go to tools/gpu_bench.py
# Prints one JSON line per configuration (see tools/gpu_bench.py). GPU_BENCH_TIMEOUT_S caps the whole run.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! python3 -c "import diffusers" 2>/dev/null; then
  if ! ls tools/wheels/diffusers-*.whl >/dev/null 2>&1; then
    echo "diffusers is not installed and tools/wheels/ holds no diffusers wheel: run tools/fetch_wheels.sh" >&2
    exit 2
  fi
  # offline: only the wheels carried along; dependencies already present (numpy, hub, safetensors) are kept
  python3 -m pip install --quiet --no-index --find-links tools/wheels diffusers >&2
fi
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" >&2
exec timeout "${GPU_BENCH_TIMEOUT_S:-470}" python3 tools/gpu_bench.py "$@"
