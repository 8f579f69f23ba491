#!/usr/bin/env bash
# Download the wheels tools/gpu_bench.sh installs offline (diffusers and its small dependencies; Pillow per Python version) into tools/wheels/.
set -euo pipefail
cd "$(dirname "$0")/.."
version=$(python3 -c "import importlib.metadata as m; print(m.version('diffusers'))" 2>/dev/null || echo 0.42.1)
python3 -m pip download --quiet --no-deps --only-binary=:all: -d tools/wheels \
  "diffusers==${version}" importlib_metadata zipp
# Pillow (a diffusers dependency torch machines may lack) is compiled: one wheel per likely Python
for py in 3.10 3.11 3.12 3.13; do
  python3 -m pip download --quiet --no-deps --only-binary=:all: --platform manylinux_2_28_x86_64 \
    --python-version "$py" -d tools/wheels pillow || echo "no Pillow wheel for Python $py" >&2
done
ls -l tools/wheels
