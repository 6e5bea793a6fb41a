#!/usr/bin/env bash
# Create (or reuse) .venv in the repository root and install qtrl into it.
#   scripts/setup.sh          runtime + exports + quantum-SDK extras
#   scripts/setup.sh --test   the same plus the test tools
# Torch is pinned to the CPU build here; set QTRL_TORCH_SPEC to install another
# (for example a CUDA build on a GPU host). Unpinned torch pulls a multi-GB CUDA wheel.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="pennylane,qiskit,export"
[ "${1:-}" = "--test" ] && extras="$extras,test"
python=${PYTHON:-python3.11}
command -v "$python" >/dev/null || python=python3
[ -x .venv/bin/python ] || "$python" -m venv .venv
pip_quiet=(-q --disable-pip-version-check)
.venv/bin/python -m pip install "${pip_quiet[@]}" "${QTRL_TORCH_SPEC:-torch==2.13.0}" 2> >(grep -v "is ignored: it is neither" >&2)
.venv/bin/python -m pip install "${pip_quiet[@]}" -e ".[$extras]" 2> >(grep -v "is ignored: it is neither" >&2)
# Byte-compile qtrl's own modules, as a non-editable pip install does: an editable
# install leaves that to the first import, and with PYTHONDONTWRITEBYTECODE set
# every launch of `qtrl` would compile its sources again.
.venv/bin/python -m compileall -q src/qtrl >/dev/null
# Compile the Numba kernels into their on-disk cache now (about a minute the first
# time, seconds after), so that the first `qtrl train` does not stall on it:
# qtrl.train imports every module with kernels, each registers its warm-up.
echo "setup: compiling kernels (once)" >&2
.venv/bin/python -c "import qtrl.train; from qtrl import jit; jit.warm()"
