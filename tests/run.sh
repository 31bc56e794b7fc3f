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
# The tests run in two phases. First all but those marked `alone`, one pytest-xdist
# worker per core (at most 4; each worker starts its own SIP testbed and PostgreSQL when
# its tests ask for them): most of a test's time is spent waiting for real peers (a call
# that rings, a lease that expires), not computing, so two at a time on two cores take
# little more than one. Then the tests marked `alone`, one at a time with the machine to
# themselves: their assertions bound a time (a take-over within 4/3 of a lease, a service
# ready within a minute) that another test's load beside them would stretch.
# pytest exits with status 5 when it collects no tests: a phase may select none (a path
# given as argument), but not both.
workers=$(nproc)
(( workers > 4 )) && workers=4
parallel=(-n "$workers" --dist loadfile)
(( workers < 2 )) && parallel=(-n 0)
status=0
step "pytest, in parallel"
"$py" -m pytest "${parallel[@]}" -m "not soak and not alone" --durations=25 "$@" || status=$?
(( status == 0 || status == 5 )) || exit "$status"
first=$status
status=0
step "pytest, alone"
"$py" -m pytest -m "alone and not soak" --durations=10 "$@" || status=$?
(( status == 0 || (status == 5 && first == 0) )) || exit "$status"
