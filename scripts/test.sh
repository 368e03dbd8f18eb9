#!/usr/bin/env bash
# The whole test suite: installs what the tests need, then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# Disk: the build and the tests' temporary captures need a few GB; say so before a test fails
# on ENOSPC halfway through.
free_kb=$(df -Pk . | awk 'NR==2 {print $4}')
tmp_kb=$(df -Pk "${TMPDIR:-/tmp}" | awk 'NR==2 {print $4}')
echo "disk free: $((free_kb / 1024)) MiB here, $((tmp_kb / 1024)) MiB in ${TMPDIR:-/tmp}"
if [ "$free_kb" -lt 4000000 ] || [ "$tmp_kb" -lt 1000000 ]; then
    echo "warning: little disk free (want 4 GB here and 1 GB for temporary files); tests may fail with ENOSPC" >&2
fi
# Gates: formatting and lints fail the run before any test does.
cargo fmt --all -- --check
cargo clippy --all-targets -- -D warnings
# Docs: broken or private intra-doc links fail (every crate); simboxd-core's `missing_docs` lint
# is enforced by the clippy gate above.
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --quiet
# Known vulnerabilities in dependencies (skipped, with a message, where the database is unreachable).
bash scripts/audit.sh
cargo test --all-targets "$@"
