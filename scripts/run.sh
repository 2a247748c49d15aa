#!/usr/bin/env bash
# Runs the gateway: embedded Mosquitto broker and SQLite store, no configuration needed.
# State goes to ./vgw-data (or --data-dir DIR); extra arguments are passed to vgwd.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
swift build -c release --product vgwd >&2
swift build -c release --product vgw >&2
swift build -c release --product vgw_meter >&2   # the broker's metering plugin, found beside vgwd
exec .build/release/vgwd "$@"
