#!/usr/bin/env bash
# Builds the three example bundles into OUTDIR (default ./bundles):
#   thermometer-1.0.0.tar.gz  examples/shell-thermometer (sh + mosquitto_pub)
#   heart-rate-1.0.0.tar.gz   examples/python-presence   (Python 3 + python3-paho-mqtt)
#   presence-1.0.0.tar.gz     examples/swift-sensor      (Swift on VGWServiceKit)
# The Swift sensor is linked with -static-stdlib so that the bundle runs on a gateway
# without a Swift toolchain (it needs only glibc and libmosquitto from Debian).
# Usage: scripts/build-examples.sh [OUTDIR]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
outdir="${1:-./bundles}"
mkdir -p "$outdir"
outdir="$(cd "$outdir" && pwd)"
cd "$root"

swift build -c release --product vgw
bin="$(swift build -c release --show-bin-path)"
# Its own scratch directory: SwiftPM does not always relink a product when only
# -static-stdlib changes, and the flag must not leak into the daemon's build.
static=(--scratch-path .build/static-examples -c release)
swift build "${static[@]}" --product example-sensor -Xswiftc -static-stdlib
sensor="$(swift build "${static[@]}" --show-bin-path)/example-sensor"
if ldd "$sensor" | grep -q 'libswiftCore'; then
  echo "error: $sensor links the Swift runtime dynamically; the bundle would not be self-contained" >&2
  exit 1
fi

stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/bin"
cp examples/swift-sensor/manifest.json "$stage/manifest.json"
install -m 0755 "$sensor" "$stage/bin/example-sensor"
# Symbols are a third of the binary; without them the archive is about 5 MB (the limit is 16 MiB).
if command -v strip >/dev/null; then strip "$stage/bin/example-sensor"; fi

# Archives are named <name>-<version>.tar.gz after their manifest (one key per line there).
pack() {
  local name version
  name="$(sed -n 's/^ *"name": *"\([^"]*\)".*/\1/p' "$1/manifest.json")"
  version="$(sed -n 's/^ *"version": *"\([^"]*\)".*/\1/p' "$1/manifest.json")"
  "$bin/vgw" bundle pack "$1" -O "$outdir/$name-$version.tar.gz"
}
pack examples/shell-thermometer
pack examples/python-presence
pack "$stage"
