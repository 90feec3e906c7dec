#!/usr/bin/env bash
# Regenerates the TypeScript client (clients/typescript) from the API's OpenAPI document: the
# document as `taskfleet-api openapi` prints it (no server, no Redis needed), then
# openapi-typescript's types (src/schema.ts), then a build to check that they compile.
# Commit clients/typescript/openapi.json and src/schema.ts afterwards; two tests fail while
# either is stale (api/tests/openapi.rs and `npm run check` in clients/typescript).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build -q -p taskfleet-api --bins
target/debug/taskfleet-api openapi > clients/typescript/openapi.json
cd clients/typescript
[ -d node_modules ] || npm ci --no-audit --no-fund
npm run -s generate
npm run -s build
echo "clients/typescript regenerated from the API's document"
