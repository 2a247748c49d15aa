#!/usr/bin/env bash
# Installs the Debian packages VirtualGateway needs, only when one is missing.
# Sourced by scripts/run.sh and scripts/test.sh; safe to run on its own.
set -euo pipefail
packages=(mosquitto mosquitto-clients libmosquitto-dev mosquitto-dev libsodium-dev libsqlite3-dev zlib1g-dev pkg-config python3-paho-mqtt libcjson-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing Debian packages: ${missing[*]}" >&2
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
