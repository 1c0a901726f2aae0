#!/usr/bin/env bash
# Core-only install check (issue #17): in a fresh, plain venv (no system site-packages),
# `pip install -e .` must give a working `matgen` CLI - a tiny train, generate and metrics run -
# and must not install the app stack (streamlit, pyvista, vtk, trame, plotly).
# Usage: .ci/check_core_install.sh   (from anywhere; prints the time it took)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
start=$SECONDS
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
unset PYTHONPATH                       # import what the venv installed, nothing from outside
export PIP_DISABLE_PIP_VERSION_CHECK=1

lap() { echo "  $1: $((SECONDS - t)) s"; t=$SECONDS; }
t=$SECONDS
python3 -m venv "$tmp/venv"
py="$tmp/venv/bin/python"
lap "fresh venv"
"$py" -m pip install -q torch==2.13.0      # the CPU wheel first (an unpinned torch pulls CUDA)
lap "torch==2.13.0"
"$py" -m pip install -q -e "$repo"
lap "pip install -e . (numpy, scipy, scikit-image, tifffile, pillow)"

# nothing of the app stack came with it
installed=$("$py" -m pip list --format=freeze)
bad=$(printf '%s\n' "$installed" | grep -iE '^(streamlit|pyvista|vtk|trame[a-z0-9_-]*|stpyvista|plotly)==' || true)
if [ -n "$bad" ]; then
  echo "FAIL: the core install pulled in the app stack:"; echo "$bad"; exit 1
fi

# a tiny train -> generate -> metrics round trip with the installed `matgen`
cd "$tmp"
matgen="$tmp/venv/bin/matgen"
tiny='{"lz":3,"img_size":32,"nz":4,"gen_channels":[8,8,8,4],"critic_channels":[8,8,8],"critic_kernels":[4,4,4,4],"critic_strides":[2,2,2,2],"critic_paddings":[1,1,1,0],"batch_size":2,"real_batch":4,"critic_iters":1,"critic_slices":4}'
sets=()
while IFS= read -r kv; do sets+=(--set "$kv"); done < <("$py" -c "
import json, sys
for k, v in json.loads(sys.argv[1]).items(): print(f'{k}={json.dumps(v, separators=(\",\", \":\"))}')" "$tiny")
t=$SECONDS
OMP_NUM_THREADS=1 "$matgen" train slicegan "$repo/assets/example_electrode.png" --out run --steps 2 \
  --device cpu --quiet "${sets[@]}"
OMP_NUM_THREADS=1 "$matgen" generate run --out vol.tif --size 32 --seed 1 --device cpu
OMP_NUM_THREADS=1 "$matgen" metrics vol.tif --reference "$repo/assets/example_electrode.png" > metrics.txt
grep -q "phase_fraction" metrics.txt || { echo "FAIL: matgen metrics printed no comparison"; cat metrics.txt; exit 1; }
lap "matgen train (2 tiny steps) + generate 32^3 + metrics"

# and importing the core in that venv loads no UI / rendering library
"$py" - <<'PY'
import importlib, os, pkgutil, sys
import matgen_core
for m in pkgutil.walk_packages(matgen_core.__path__, "matgen_core."):
    if m.name != "matgen_core.render":
        importlib.import_module(m.name)
bad = sorted({n.split(".")[0] for n in sys.modules} & {"streamlit", "pyvista", "vtk", "trame", "plotly"})
assert not bad, f"core modules imported {bad}"
assert "VTK_DEFAULT_OPENGL_WINDOW" not in os.environ, "core import set a VTK variable"
PY
echo "core install check passed in $((SECONDS - start)) s"
