#!/usr/bin/env bash
# Builds weir's Python package and runs its tests: `pip install ./python` (maturin compiles the
# Rust extension, python/Cargo.toml, in release mode) into a virtualenv under the repository,
# then `pytest python/tests` (the end-to-end tests read ../shared/data/real/).
#
# Idempotent: the virtualenv (.venv, or $WEIR_VENV) and cargo's build directory
# (python/target) are kept, so a second run only rebuilds what changed. Needs Python 3.9+ with
# venv and pip, and Rust; maturin, pyarrow and pytest come from PyPI the first time.
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=${WEIR_VENV:-.venv}
if [ ! -x "$venv/bin/python" ]; then
  echo "python-test: creating the virtualenv $venv"
  "${PYTHON:-python3}" -m venv "$venv"
fi
# maturin (the build backend) must be on PATH for pip's --no-build-isolation build.
export PATH="$PWD/$venv/bin:$PATH"
python -m pip install --quiet "maturin>=1.9.4,<2" "pyarrow>=16" pytest
t0=$SECONDS
python -m pip install --quiet --no-build-isolation --force-reinstall --no-deps ./python
echo "python-test: pip install ./python took $((SECONDS - t0)) s"
python -m pytest -q python/tests "$@"
