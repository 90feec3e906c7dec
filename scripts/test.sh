#!/usr/bin/env bash
# The whole check, as CI runs it: installs what is missing, then fmt, clippy and every test.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests need: redis-server (a real one, started by the tests on free
# ports), ffmpeg and espeak-ng (the processors' tools), fonts for drawn images.
need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v redis-benchmark >/dev/null || need+=(redis-tools)
command -v ffmpeg >/dev/null || need+=(ffmpeg)
command -v espeak-ng >/dev/null || need+=(espeak-ng)
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || need+=(fonts-dejavu-core)
command -v curl >/dev/null || need+=(curl)
# shellcheck source=scripts/lib/install-missing.sh
source scripts/lib/install-missing.sh  # the scripts run from the repository root
install_missing "${need[@]}"

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --all-features -- -D warnings
# Binaries first: the worker and API tests (and the fuzzer) start real processes of them.
cargo build --workspace --bins --all-features
echo "== fuzzing the REST API from its OpenAPI document"
scripts/fuzz-api.sh  # no 5xx, no answer off the document
echo "== cargo test"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --workspace --all-features 2>&1 | tee "$log"
# One closing line for the whole suite, summed over every test binary.
awk '/^test result:/ { p += $4; f += $6 } END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
