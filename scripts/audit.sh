#!/usr/bin/env bash
# Audits Cargo.lock against the RustSec advisory database with cargo-audit: fails on a known
# vulnerability (unmaintained/unsound notices are printed, not fatal).
# The database comes from $SIMBOXD_ADVISORY_DB (a local clone) or from GitHub; where neither is
# available (a closed network) the audit says so and is skipped. cargo-audit is installed from
# crates.io when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
db_args=()
if [ -n "${SIMBOXD_ADVISORY_DB:-}" ]; then
  db_args=(--db "$SIMBOXD_ADVISORY_DB" --no-fetch)
elif ! timeout 20 git ls-remote https://github.com/rustsec/advisory-db HEAD >/dev/null 2>&1; then
  echo "audit: the RustSec advisory database is unreachable here (no GitHub access) and" \
       "SIMBOXD_ADVISORY_DB is not set: cargo audit skipped" >&2
  exit 0
fi
if ! command -v cargo-audit >/dev/null 2>&1; then
  echo "audit: installing cargo-audit" >&2
  cargo install --locked --quiet cargo-audit
fi
cargo audit "${db_args[@]}"
