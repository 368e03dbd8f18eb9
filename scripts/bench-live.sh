#!/usr/bin/env bash
# Live capture on a real link: the daemon captures one end of a veth pair in a network namespace
# of its own while tcpreplay replays a labelled simulated capture onto the other end, at rising
# rates. Prints per rate: packets sent, captured, processed, dropped (kernel / interface / queue),
# daemon CPU per captured packet and peak RSS. Then replays a short labelled capture at natural
# speed (--multiplier 1) and checks detection: every labelled gateway flagged, no normal line.
#
#   sudo scripts/bench-live.sh [RATES...]        (default: 100000 250000 500000 top; `none`: only
#                                                 the detection check)
#
# Environment: SIMBOXD (binary; default target/release/simboxd, built if missing),
# BENCH_PACKETS (rate capture size, default 1000000), BENCH_WORKERS (daemon workers, default:
# the daemon's own default, one per core), BENCH_IMMEDIATE (capture.immediate, default false),
# BENCH_BUFFER_MIB (capture.buffer_mib, default 256), BENCH_DETECT_SECS (natural-speed capture
# length, default 240; 0 skips the check), BENCH_DIR (work folder, kept; default a temp folder,
# removed).
# Needs root (network namespaces), iproute2, tcpreplay, curl (scripts/setup.sh installs them).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
RATES=("$@")
[ ${#RATES[@]} -gt 0 ] || RATES=(100000 250000 500000 top)
PACKETS=${BENCH_PACKETS:-1000000}
IMMEDIATE=${BENCH_IMMEDIATE:-false}
BUFFER=${BENCH_BUFFER_MIB:-256}
DETECT_SECS=${BENCH_DETECT_SECS:-240}
NS=simboxd-bench-$$
TOKEN=bench-token-0123456789abcdef
PORT=18089

[ "$(id -u)" -eq 0 ] || { echo "bench-live: needs root (network namespaces)" >&2; exit 2; }
for t in ip tcpreplay curl; do
  command -v "$t" >/dev/null || { echo "bench-live: $t missing (run scripts/setup.sh)" >&2; exit 2; }
done
if [ -z "${SIMBOXD:-}" ]; then
  SIMBOXD=$ROOT/target/release/simboxd
  cargo build --release --quiet --bin simboxd
fi

if [ -n "${BENCH_DIR:-}" ]; then
  WORK=$BENCH_DIR
  mkdir -p "$WORK"
else
  WORK=$(mktemp -d /tmp/simboxd-bench-live.XXXXXX)
fi
DPID=""
cleanup() {
  [ -n "$DPID" ] && kill "$DPID" 2>/dev/null && wait "$DPID" 2>/dev/null || true
  ip netns del "$NS" 2>/dev/null || true
  [ -n "${BENCH_DIR:-}" ] || rm -rf "$WORK"
}
trap cleanup EXIT

# The link: vsend (tcpreplay) <-> vcap (daemon), both in the namespace; loopback for the API.
ip netns add "$NS"
nsx() { ip netns exec "$NS" "$@"; }
nsx ip link set lo up
nsx ip link add vsend type veth peer name vcap
nsx ip link set vsend mtu 9000 up
nsx ip link set vcap mtu 9000 up
# No IPv6 router solicitations or other chatter of the kernel's own on the link.
nsx sysctl -qw net.ipv6.conf.vsend.disable_ipv6=1 net.ipv6.conf.vcap.disable_ipv6=1

metric() { # metric NAME [LABELS] -> value (0 when absent)
  local body=$1 name=$2 labels=${3:-}
  awk -v n="$name" -v l="$labels" '
    /^#/ { next }
    { split($1, a, "{"); if (a[1] != n) next; if (l != "" && index($1, l) == 0) next; s += $2 }
    END { printf "%.0f", s }' <<<"$body"
}
scrape() { nsx curl -s -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$PORT/metrics"; }

start_daemon() { # start_daemon NAME
  local d=$WORK/$1
  rm -rf "$d"; mkdir -p "$d"
  {
    printf '[capture]\ninterface = "vcap"\nbuffer_mib = %s\nimmediate = %s\n\n' "$BUFFER" "$IMMEDIATE"
    printf '[http]\nlisten = "127.0.0.1:%s"\ntoken = "%s"\n\n' "$PORT" "$TOKEN"
    printf '[daemon]\nuser = ""\ngroup = ""\nlog_level = "warn"\n'
    [ -n "${BENCH_WORKERS:-}" ] && printf 'workers = %s\n' "$BENCH_WORKERS"
    printf '\n[storage]\npath = "%s/alerts.redb"\n' "$d"
  } >"$d/simboxd.toml"
  # Not through a shell function: $! must be the daemon itself (ip netns exec execs it).
  ip netns exec "$NS" "$SIMBOXD" run --config "$d/simboxd.toml" >"$d/daemon.log" 2>&1 &
  DPID=$!
  for _ in $(seq 1 100); do
    nsx curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "bench-live: daemon did not start; log:" >&2
  cat "$d/daemon.log" >&2
  exit 1
}
stop_daemon() {
  kill "$DPID" 2>/dev/null || true
  wait "$DPID" 2>/dev/null || true
  DPID=""
}
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$DPID/stat"; }
peak_rss_mib() { awk '/^VmHWM/ { printf "%.0f", $2 / 1024 }' "/proc/$DPID/status"; }
# Waits until the daemon has processed everything it captured (queue empty, counters still).
settle() {
  local last="" now
  for _ in $(seq 1 300); do
    sleep 0.5
    local m; m=$(scrape)
    now="$(metric "$m" simboxd_packets_captured_total) $(metric "$m" simboxd_packets_processed_total)"
    if [ "$now" = "$last" ] && [ "$(metric "$m" simboxd_queue_packets)" = 0 ]; then return 0; fi
    last=$now
  done
}

# 1. Rates, on a simulated mix of about $PACKETS packets.
RATECAP=$WORK/rate.pcap
if [ ! -s "$RATECAP" ]; then
  secs=$(( PACKETS / 4000 + 1 ))
  "$SIMBOXD" simulate --seed 11 --duration "${secs}s" --out "$RATECAP" 2>&1 | tee "$WORK/rate.txt"
fi
echo "daemon: workers=${BENCH_WORKERS:-default (cores: $(nproc))}, capture.immediate=$IMMEDIATE, buffer_mib=$BUFFER"
printf '%-10s %10s %10s %10s %10s %8s %8s %8s %9s %10s %8s\n' \
  rate sent_pps sent captured processed kernel iface queue cpu_us/pk cpu_util peak_MiB
for rate in "${RATES[@]}"; do
  [ "$rate" != none ] || continue
  start_daemon "rate-$rate"
  if [ "$rate" = top ]; then rarg=(--topspeed); else rarg=(--pps="$rate"); fi
  t0=$(cpu_ticks); w0=$(date +%s.%N)
  out=$(nsx tcpreplay -i vsend --preload-pcap "${rarg[@]}" "$RATECAP" 2>&1)
  settle
  w1=$(date +%s.%N); t1=$(cpu_ticks)
  sleep 1.5 # kernel counters are read with the next packets or ticks
  m=$(scrape)
  sent=$(awk '/Actual:/ { print $2; exit }' <<<"$out")
  pps=$(awk '/Rated:/ { for (i = 1; i <= NF; i++) if ($i ~ /pps/) { print $(i-1); exit } }' <<<"$out")
  cap=$(metric "$m" simboxd_packets_captured_total)
  proc=$(metric "$m" simboxd_packets_processed_total)
  kdrop=$(metric "$m" simboxd_packets_dropped_total 'reason="kernel"')
  idrop=$(metric "$m" simboxd_packets_dropped_total 'reason="interface"')
  qdrop=$(( $(metric "$m" simboxd_packets_dropped_total 'reason="queue_full"') + $(metric "$m" simboxd_packets_dropped_total 'reason="worker_gone"') ))
  hz=$(getconf CLK_TCK)
  cpu_s=$(awk -v a="$t0" -v b="$t1" -v hz="$hz" 'BEGIN { printf "%.3f", (b - a) / hz }')
  per=$(awk -v c="$cpu_s" -v n="$cap" 'BEGIN { if (n > 0) printf "%.2f", c * 1e6 / n; else print "-" }')
  util=$(awk -v c="$cpu_s" -v a="$w0" -v b="$w1" 'BEGIN { printf "%.0f%%", 100 * c / (b - a) }')
  printf '%-10s %10s %10s %10s %10s %8s %8s %8s %9s %10s %8s\n' \
    "$rate" "${pps:-?}" "${sent:-?}" "$cap" "$proc" "$kdrop" "$idrop" "$qdrop" "$per" "$util" "$(peak_rss_mib)"
  stop_daemon
done

# 2. Detection at natural speed: packet time is wall time again.
[ "$DETECT_SECS" -gt 0 ] || exit 0
DETCAP=$WORK/detect.pcap
cat >"$WORK/detect.toml" <<EOF
duration = "${DETECT_SECS}s"
scale = 1.0
start = "2026-01-05T09:00:00Z"

[[population]]
kind = "gateway"
site = "site-1"
count = 2
channels = 4
registration = "per-port"
ua = "vendor"
codec = "G729"

[[population]]
kind = "gateway"
channels = 8
registration = "trunk"
ua = "softphone"
codec = "PCMA"

[[population]]
kind = "household"
count = 4
calls_per_hour = 20.0
codec = "G729"

[[population]]
kind = "office-pbx"
channels = 2
calls_per_hour = 40.0
codec = "G729"

[[population]]
kind = "app-calls"
calls_per_hour = 30.0
EOF
"$SIMBOXD" simulate --seed 23 --scenario "$WORK/detect.toml" --out "$DETCAP" >/dev/null
start_daemon detect
echo "detection: replaying ${DETECT_SECS} s at natural speed (--multiplier 1) ..."
nsx tcpreplay -i vsend --multiplier 1 "$DETCAP" >/dev/null 2>&1
settle
sleep 3
nsx curl -s -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$PORT/api/v1/lines?limit=100000" >"$WORK/lines.json"
stop_daemon
python3 - "$WORK/lines.json" "${DETCAP%.pcap}.labels.json" <<'EOF'
import json, sys
lines = {l["line"]: l for l in json.load(open(sys.argv[1]))["lines"]}
labels = json.load(open(sys.argv[2]))["lines"]
gw = [a for a, l in labels.items() if l["label"] == "gateway"]
normal = [a for a, l in labels.items() if l["label"] != "gateway"]
flagged = lambda a: lines.get(a, {}).get("verdict", "normal") != "normal"
hit = [a for a in gw if flagged(a)]
fp = [a for a in normal if flagged(a)]
print(f"detection: {len(hit)}/{len(gw)} labelled gateways flagged, {len(fp)}/{len(normal)} normal lines flagged")
for a in sorted(set(gw) - set(hit)):
    print(f"  missed gateway {a} ({labels[a]['kind']}): {lines.get(a, {}).get('verdict', 'not seen')}")
for a in fp:
    print(f"  flagged normal line {a} ({labels[a]['kind']}): {lines[a]['verdict']}")
sys.exit(0 if len(hit) == len(gw) and not fp else 1)
EOF
