#!/usr/bin/env bash
# Set up the development environment and run the whole test suite: the unit and integration
# tests under tests/, then the notebooks under nbval with their default parameters.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bash "$root/scripts/setup.sh" --dev
cd "$root"
# Notebooks write their default run under notebooks/runs/; start from an empty one so that
# nbval checks a fresh run, not a resumed one.
rm -rf notebooks/runs
.venv/bin/python -m pytest tests "$@"
.venv/bin/python -m pytest --nbval-lax --nbval-sanitize-with tests/nbval_sanitize.cfg notebooks
