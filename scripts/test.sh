#!/usr/bin/env bash
# Set up the development environment and run the whole test suite, notebooks included.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bash "$root/scripts/setup.sh" --dev
cd "$root"
exec .venv/bin/python -m pytest "$@"
