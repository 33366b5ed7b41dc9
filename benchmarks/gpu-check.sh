#!/usr/bin/env bash
# make gpu-check: benchmarks/gpu_check.py with the project from this checkout and, where .whl/ holds wheels
# (make gpu-wheels), those wheels on the path first. Arguments go to gpu_check.py (--help: the budget, the
# sections, what to carry to a GPU host). The budget counts from here: installing the wheels is in it.
set -euo pipefail
export GPU_CHECK_T0=${GPU_CHECK_T0:-$(date +%s.%N)}
cd "$(dirname "$0")/.."
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
if compgen -G ".whl/*.whl" > /dev/null; then
  site=$(mktemp -d)
  if ! err=$("$PY" -m pip install -q --no-index --no-deps --no-compile --target "$site" .whl/*.whl 2>&1); then
    echo "Warning: the wheels in .whl/ do not install on $("$PY" -V 2>&1) here ($(tail -n 1 <<< "$err")):" \
      "using the packages it has" >&2
  fi
  # The checkout runs from PYTHONPATH, not installed: give fracbuild a version record for its manifests.
  mkdir -p "$site/fracbuild-0.0.0.dist-info"
  printf 'Metadata-Version: 2.1\nName: fracbuild\nVersion: 0.0.0\n' > "$site/fracbuild-0.0.0.dist-info/METADATA"
  export GPU_CHECK_WHEELS=$site
  export PYTHONPATH="$site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
else
  echo "Note: no wheels in .whl/ (make gpu-wheels): the packages of benchmarks/gpu-wheels.txt must be installed" >&2
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONUNBUFFERED=1
exec "$PY" benchmarks/gpu_check.py "$@"
