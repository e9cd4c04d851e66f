#!/usr/bin/env bash
# Install voxd as a systemd service: code in /opt/voxd, config in /etc/voxd,
# state (database, agents) in /var/lib/voxd. Run as root from a checkout.
set -euo pipefail
src="$(cd "$(dirname "$0")/.." && pwd)"
dest=/opt/voxd
[[ $(id -u) -eq 0 ]] || { echo "run as root" >&2; exit 1; }
mkdir -p "$dest"
cp -a "$src/." "$dest/"
(cd "$dest" && ./scripts/setup.sh --no-apt)
install -d -m 0755 /etc/voxd /var/lib/private/voxd
if [[ ! -f /etc/voxd/voxd.yaml ]]; then
  sed -e 's/^  port: 5080/  port: 5060/' \
      -e 's#^agents_dir: agents#agents_dir: /var/lib/voxd/agents#' \
      "$src/config/voxd.yaml" > /etc/voxd/voxd.yaml
fi
if [[ ! -d /var/lib/private/voxd/agents ]]; then
  cp -a "$src/agents" /var/lib/private/voxd/agents
fi
install -m 0644 "$src/systemd/voxd.service" /etc/systemd/system/voxd.service
systemctl daemon-reload
systemctl enable --now voxd
echo "voxd installed: systemctl status voxd; journalctl -u voxd -f"
