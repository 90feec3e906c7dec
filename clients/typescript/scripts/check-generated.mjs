// Fails when src/schema.ts is not what openapi-typescript makes of openapi.json now: the
// generated client is stale (run scripts/gen-ts-client.sh at the repository's root and commit).
// api/tests/openapi.rs checks the other half: that openapi.json is the API's own document.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const here = fileURLToPath(new URL("..", import.meta.url));
const dir = mkdtempSync(join(tmpdir(), "tf-client-"));
try {
  const out = join(dir, "schema.ts");
  execFileSync(
    process.execPath,
    [join(here, "node_modules/openapi-typescript/bin/cli.js"), join(here, "openapi.json"), "--output", out],
    { stdio: ["ignore", "ignore", "inherit"] },
  );
  const fresh = readFileSync(out, "utf8");
  const committed = readFileSync(join(here, "src/schema.ts"), "utf8");
  if (fresh !== committed) {
    console.error("src/schema.ts is stale: run scripts/gen-ts-client.sh and commit the result");
    process.exit(1);
  }
  console.log("src/schema.ts matches openapi.json");
} finally {
  rmSync(dir, { recursive: true, force: true });
}
