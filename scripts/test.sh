#!/usr/bin/env bash
# Runs the whole test suite (installing the Debian packages it needs first).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
swift build --build-tests
swift test --skip-build "$@"
