#!/usr/bin/env bash
# Runs `simboxd analyze` on the sample capture shipped in captures/ (a SIM-box site among ordinary
# lines) and writes the field-officer report and evidence under out/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
mkdir -p out
# 198.18.0.0/15 is the simulator's domestic (national) provider range: see captures/README.md.
cargo run --release --quiet -- analyze captures/sample-site.pcap \
  --domestic-net 198.18.0.0/15 \
  --report out/sample-site-report.html \
  --evidence out/sample-site-evidence "$@"
echo
echo "report:   out/sample-site-report.html"
echo "evidence: out/sample-site-evidence/manifest.json"
