#!/usr/bin/env bash
# Run every check of the project: ruff (lint + format), mypy --strict, import-linter
# contracts, and the whole pytest suite (SIP testbed included).
#
#   bash tests/run.sh            run the checks with ./.venv
#   bash tests/run.sh --install  first install the apt packages and the Python test extra
#
# Set CI=true to turn a missing SIP peer into a failure instead of a skip.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ "${1:-}" == "--install" ]]; then
    shift
    bash sip-testbed/install-deps.sh --tests
    python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
        || { echo "voipalert needs Python 3.11 or newer" >&2; exit 1; }
    [[ -x .venv/bin/python ]] || python3 -m venv .venv
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e '.[test]'
fi

py=.venv/bin/python
step() { printf '\n=== %s\n' "$*"; }
step "ruff";          "$py" -m ruff check .
step "ruff format";   "$py" -m ruff format --check .
step "mypy --strict"; "$py" -m mypy
step "import-linter"; .venv/bin/lint-imports
# pytest exits with status 5 when it collects no tests, which fails this script.
step "pytest";        "$py" -m pytest --durations=25 "$@"
