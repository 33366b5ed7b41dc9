#!/usr/bin/env bash
# make gpu-check: benchmarks/gpu_check.py with the project from this checkout and, where .whl/ holds wheels
# (make gpu-wheels), those wheels on the path first. Arguments go to gpu_check.py.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
if compgen -G ".whl/*.whl" > /dev/null; then
  site=$(mktemp -d)
  if ! "$PY" -m pip install -q --no-index --no-deps --no-compile --target "$site" .whl/*.whl 2> /dev/null; then
    echo "Warning: the wheels in .whl/ do not install on $("$PY" -V) here: using the packages it has" >&2
  fi
  # The checkout runs from PYTHONPATH, not installed: give fracbuild a version record for its manifests.
  mkdir -p "$site/fracbuild-0.0.0.dist-info"
  printf 'Metadata-Version: 2.1\nName: fracbuild\nVersion: 0.0.0\n' > "$site/fracbuild-0.0.0.dist-info/METADATA"
  export PYTHONPATH="$site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
else
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONUNBUFFERED=1
exec "$PY" benchmarks/gpu_check.py "$@"
