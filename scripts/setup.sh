#!/usr/bin/env bash
# Installs what simboxd needs to build and test on a fresh Debian machine with Rust.
# Idempotent: skips apt-get when every package is already present.
set -euo pipefail
# prometheus: promtool checks the live /metrics (tests/ops.rs; ~96 MB installed, the only
# Debian package with promtool). util-linux: setpriv runs the daemon as the unit does.
# tmux: tests/watch_tmux.rs drives `simboxd watch` in a real terminal. tcpreplay, curl: the live
# capture test (tests/capture_live_veth.rs) and scripts/bench-live.sh replay onto a veth pair.
# rsyslog-relp: imrelp, the RELP receiver tests/alert_syslog.rs delivers to. wireshark-common:
# editcap, mergecap and capinfos make the capture forms of tests/analyze_inputs.rs.
# nats-server: JetStream between sensors and `simboxd central` (tests/stream_*.rs start it).
# python3: tests/data/siem_parse.py reads ECS and CEF alerts independently of simboxd.
PKGS=(libpcap-dev pkg-config tshark wireshark-common tcpdump sip-tester rsyslog rsyslog-gnutls rsyslog-relp iproute2 chromium poppler-utils
      systemd ca-certificates openssl prometheus util-linux tmux tcpreplay curl nats-server python3)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  echo "setup: installing ${missing[*]}" >&2
  $SUDO apt-get update -qq
  # wireshark-common asks whether non-root users may capture; answer no without a prompt.
  echo "wireshark-common wireshark-common/install-setuid boolean false" | $SUDO debconf-set-selections
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
