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
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "== installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${need[@]}" >/dev/null
  else
    echo "missing: ${need[*]}; install them (sudo apt-get install ${need[*]}) and run again" >&2
    exit 1
  fi
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== cargo test"
# Binaries first: the worker and API tests start real processes of them.
cargo build --workspace --bins
cargo test --workspace
scripts/fuzz-api.sh  # the REST API fuzzed from its OpenAPI document: no 5xx, no answer off the document
