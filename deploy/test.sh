#!/usr/bin/env bash
# The project's one test command: engine, environment, linters, type checks, then every test.
#
#   deploy/test.sh [PYTEST_ARGS...]
#
# Starts (or checks) the Docker engine, creates .venv if needed and (re)installs the project
# into it when pyproject.toml changed, then runs in order, stopping at the first failure:
# ruff check, ruff format --check, mypy --strict, import-linter, and pytest over the whole suite
# (unit and engine tests). Extra arguments go to pytest. Safe to run repeatedly.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

step() { printf '\n==> %s\n' "$*"; }

step "docker engine"
bash deploy/setup-docker.sh

step "python environment"
VENV=.venv
STAMP=$VENV/.dsr-installed
if [[ ! -x $VENV/bin/python ]]; then
    python3 -m venv "$VENV"
fi
if [[ ! -f $STAMP || pyproject.toml -nt $STAMP ]]; then
    echo "installing the project into $VENV (log: $VENV/pip-install.log)"
    if ! "$VENV/bin/python" -m pip install --quiet -e '.[test]' >"$VENV/pip-install.log" 2>&1; then
        cat "$VENV/pip-install.log" >&2
        echo "test.sh: pip install failed" >&2
        exit 1
    fi
    touch "$STAMP"
else
    echo "up to date ($STAMP is newer than pyproject.toml)"
fi
export PATH="$PWD/$VENV/bin:$PATH"

step "ruff check"
ruff check .

step "ruff format --check"
ruff format --check .

step "mypy --strict reconciler"
mypy --strict reconciler

step "lint-imports"
lint-imports

step "pytest $*"
rc=0
python -m pytest "$@" || rc=$?
if [[ $rc -eq 5 ]]; then
    echo "test.sh: pytest collected no tests (exit 5); a test run must run tests" >&2
    exit 1
fi
exit "$rc"
