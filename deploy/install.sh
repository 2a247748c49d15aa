#!/usr/bin/env bash
# Builds vgwd and vgw in release mode and installs them with the systemd unit.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
swift build -c release
install -m 0755 .build/release/vgwd .build/release/vgw /usr/local/bin/
# The broker's metering plugin (traffic figures, quotas); vgwd looks for it here.
install -d /usr/local/lib/vgw
install -m 0755 .build/release/libvgw_meter.so /usr/local/lib/vgw/
install -m 0644 deploy/vgwd.service /etc/systemd/system/vgwd.service
echo "installed; start with: systemctl daemon-reload && systemctl enable --now vgwd"
echo "the CLI: vgw -d /var/lib/vgw provider list"
