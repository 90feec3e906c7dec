// The example application's backend: it serves the frontend (public/) from its own origin, and
// signs its users in by minting each a short-lived taskfleet token (an HS256 JWT with the
// secret it shares with the API), so the browser never holds an API key. No dependencies:
// node's http and crypto.
//
//   TASKFLEET_API=http://127.0.0.1:8080 TASKFLEET_JWT_SECRET=... PORT=5173 node server.mjs
//
// The API must let this origin in (TASKFLEET__API__CORS_ORIGINS=http://127.0.0.1:5173) and
// verify with the same secret (TASKFLEET__AUTH__JWT__HS256_SECRET). A real backend would check
// a password or a session here; this one knows three users and trusts the choice.
import { createHmac } from "node:crypto";
import { readFile } from "node:fs/promises";
import { createServer } from "node:http";
import { extname, join, normalize } from "node:path";
import { fileURLToPath } from "node:url";

const here = fileURLToPath(new URL(".", import.meta.url));
const client = join(here, "../../clients/typescript");
const port = Number(process.env.PORT ?? 5173);
const api = process.env.TASKFLEET_API ?? "http://127.0.0.1:8080";
const secret = process.env.TASKFLEET_JWT_SECRET ?? "";
const audience = process.env.TASKFLEET_JWT_AUDIENCE ?? "";
const lifetime = Number(process.env.TOKEN_SECONDS ?? 900);
if (secret.length < 32) {
  console.error("TASKFLEET_JWT_SECRET must be the API's auth.jwt.hs256_secret (32 bytes or more)");
  process.exit(1);
}

// The application's users: its own accounts and roles, nothing of taskfleet's.
const USERS = {
  alice: { account: "acme", role: "user", name: "Alice (acme)" },
  bob: { account: "acme", role: "user", name: "Bob (acme)" },
  ada: { account: "acme", role: "account_admin", name: "Ada (acme, account admin)" },
};

const b64 = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");

/** A taskfleet token for one of our users: sub, account_id, role, exp (docs/api.md, Tokens). */
function mint(userId) {
  const user = USERS[userId];
  const now = Math.floor(Date.now() / 1000);
  const head = b64({ alg: "HS256", typ: "JWT" });
  const claims = { sub: userId, account_id: user.account, role: user.role, iat: now, exp: now + lifetime };
  if (audience) claims.aud = audience;
  const body = b64(claims);
  const sig = createHmac("sha256", secret).update(`${head}.${body}`).digest("base64url");
  return `${head}.${body}.${sig}`;
}

const TYPES = { ".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8", ".json": "application/json" };

// What the page may load: its own files, the built client, and openapi-fetch (an import map in
// index.html maps the bare "openapi-fetch" to the last).
const ROUTES = [
  ["/vendor/client/", join(client, "dist")],
  ["/vendor/openapi-fetch.js", join(client, "node_modules/openapi-fetch/dist/index.mjs")],
  ["/", join(here, "public")],
];

async function serveFile(res, path) {
  for (const [prefix, dir] of ROUTES) {
    if (!path.startsWith(prefix)) continue;
    const rest = path.slice(prefix.length) || "index.html";
    const file = prefix.endsWith("/") ? normalize(join(dir, rest)) : dir;
    if (prefix.endsWith("/") && !file.startsWith(dir)) break;
    try {
      const body = await readFile(file);
      res.writeHead(200, { "content-type": TYPES[extname(file)] ?? "application/octet-stream", "cache-control": "no-cache" });
      return res.end(body);
    } catch {
      break;
    }
  }
  res.writeHead(404, { "content-type": "text/plain" });
  res.end("not found");
}

const server = createServer(async (req, res) => {
  const url = new URL(req.url, `http://${req.headers.host}`);
  if (req.method === "GET" && url.pathname === "/config.json") {
    res.writeHead(200, { "content-type": "application/json" });
    return res.end(JSON.stringify({ api, users: Object.entries(USERS).map(([id, u]) => ({ id, name: u.name })) }));
  }
  if (req.method === "POST" && url.pathname === "/session") {
    let raw = "";
    for await (const chunk of req) raw += chunk;
    const { user } = JSON.parse(raw || "{}");
    if (!USERS[user]) {
      res.writeHead(401, { "content-type": "application/json" });
      return res.end(JSON.stringify({ error: "no such user" }));
    }
    res.writeHead(200, { "content-type": "application/json", "cache-control": "no-store" });
    return res.end(JSON.stringify({ token: mint(user), expires_in: lifetime, user, ...USERS[user] }));
  }
  if (req.method === "GET") return serveFile(res, url.pathname);
  res.writeHead(405);
  res.end();
});

server.listen(port, "127.0.0.1", () => {
  console.log(`example frontend on http://127.0.0.1:${port} (API ${api})`);
});
