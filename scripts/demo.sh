#!/usr/bin/env bash
# Runs `simboxd analyze` on the sample capture shipped in captures/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo run --release --quiet -- analyze captures/sample-site.pcap --labels captures/sample-site.labels.json "$@"
