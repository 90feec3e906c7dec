#!/usr/bin/env bash
# The whole check, as CI runs it: installs what is missing, then fmt, clippy and every test:
# the Rust suite, the API fuzzed from its OpenAPI document, the TypeScript client, and the
# browser tests (the example frontend and the dashboard in a headless Chromium).
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests need: redis-server (a real one, started by the tests on free
# ports), ffmpeg and espeak-ng (the processors' tools), fonts for drawn images, Chromium for the
# browser tests (Debian's: no browser is downloaded), node and npm for the TypeScript client.
need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v redis-benchmark >/dev/null || need+=(redis-tools)
command -v ffmpeg >/dev/null || need+=(ffmpeg)
command -v espeak-ng >/dev/null || need+=(espeak-ng)
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || need+=(fonts-dejavu-core)
command -v curl >/dev/null || need+=(curl)
command -v chromium >/dev/null || need+=(chromium)
command -v node >/dev/null || need+=(nodejs)
command -v npm >/dev/null || need+=(npm)
# shellcheck source=scripts/lib/install-missing.sh
source scripts/lib/install-missing.sh  # the scripts run from the repository root
install_missing "${need[@]}"

# npm packages, at the versions their package-lock.json pins, when missing or out of date.
npm_ci() {
  local dir=$1
  if [ ! -f "$dir/node_modules/.package-lock.json" ] || [ "$dir/package-lock.json" -nt "$dir/node_modules/.package-lock.json" ]; then
    echo "== npm ci in $dir"
    # puppeteer-core downloads no browser; the variable makes sure nothing else tries.
    (cd "$dir" && PUPPETEER_SKIP_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
  fi
}
npm_ci clients/typescript
npm_ci tests/browser

# No incremental caches: CI builds once from a clean checkout, and they would double the size of
# target/ on a disk shared with everything else.
export CARGO_INCREMENTAL=0

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --all-features -- -D warnings
# Binaries first: the worker and API tests (and the fuzzer, and the browser tests) start real
# processes of them.
cargo build --workspace --bins --all-features
echo "== fuzzing the REST API from its OpenAPI document"
scripts/fuzz-api.sh  # no 5xx, no answer off the document
log=$(mktemp)
trap 'rm -f "$log"' EXIT
echo "== cargo test"
cargo test --workspace --all-features 2>&1 | tee "$log"
echo "== the TypeScript client: generated types up to date, built, its tests"
(cd clients/typescript && npm run -s check && npm run -s build && npm test) 2>&1 | tee -a "$log"
echo "== browser tests: the example frontend and the dashboard in headless Chromium"
(cd tests/browser && npm test) 2>&1 | tee -a "$log"
# One closing line for the whole suite, summed over every test binary and node run.
awk '/^test result:/ { p += $4; f += $6 } /^# pass / { p += $3 } /^# fail / { f += $3 }
  END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
