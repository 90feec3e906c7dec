// What the browser tests run against, all real and all started here on free loopback ports:
// a redis-server (never 6379), the taskfleet-api and taskfleet-worker binaries of this
// checkout (target/debug, built by scripts/test.sh before), the example frontend's backend on
// another origin, and Debian's Chromium driven by puppeteer-core (no browser download).
// Everything started is stopped by its pid when the test ends.
import { spawn, execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { inflateSync } from "node:zlib";

import puppeteer from "puppeteer-core";

export const ROOT = fileURLToPath(new URL("../..", import.meta.url));
export const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
const BIN = join(ROOT, "target/debug");

/** A free loopback port (never 6379). */
export async function freePort() {
  for (;;) {
    const port = await new Promise((resolve, reject) => {
      const s = createServer();
      s.once("error", reject);
      s.listen(0, "127.0.0.1", () => {
        const { port } = s.address();
        s.close(() => resolve(port));
      });
    });
    if (port !== 6379) return port;
  }
}

/** Polls `check` every 100 ms until it is true, at most `ms` (a bound, not a timing claim). */
export async function until(what, check, ms = 30_000) {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      if (await check()) return;
    } catch {
      // not yet
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** The stack: Redis, the API (CORS for the example's origin, HS256 tokens, an admin key), a
 *  worker (story, voice and the test queue: not video, so a video waits and a cancel of it is
 *  certain), the example backend. */
export async function startStack() {
  for (const bin of ["taskfleet-api", "taskfleet-worker"]) {
    if (!existsSync(join(BIN, bin))) {
      throw new Error(`${join(BIN, bin)} is missing: run cargo build --workspace --bins first`);
    }
  }
  const dir = mkdtempSync(join(tmpdir(), "tf-browser-"));
  const children = [];
  const logs = {};
  const start = (name, cmd, args, env = {}) => {
    const child = spawn(cmd, args, {
      cwd: ROOT,
      env: { ...process.env, ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    logs[name] = "";
    const keep = (d) => {
      logs[name] = (logs[name] + d.toString()).slice(-20_000);
    };
    child.stdout.on("data", keep);
    child.stderr.on("data", keep);
    children.push(child);
    return child;
  };
  const redisPort = await freePort();
  start("redis", "redis-server", ["--port", String(redisPort), "--bind", "127.0.0.1", "--save", "",
    "--appendonly", "no", "--dir", dir, "--maxmemory-policy", "noeviction"]);
  const redisUrl = `redis://127.0.0.1:${redisPort}`;
  const apiPort = await freePort();
  const examplePort = await freePort();
  const apiUrl = `http://127.0.0.1:${apiPort}`;
  const exampleUrl = `http://127.0.0.1:${examplePort}`;
  const secret = randomBytes(32).toString("hex");
  const adminKey = `browser-admin-${randomBytes(16).toString("hex")}`;
  const env = {
    TASKFLEET__REDIS__PREFIX: "browser",
    TASKFLEET__ARTIFACTS__DIR: join(dir, "artifacts"),
    TASKFLEET__AUTH__ADMIN_KEY: adminKey,
    TASKFLEET__AUTH__JWT__HS256_SECRET: secret,
    TASKFLEET__API__CORS_ORIGINS: exampleUrl,
    TASKFLEET__WORKER__LEASE_SECONDS: "6",
    RUST_LOG: "warn",
    REDIS_URL: redisUrl,
  };
  await until("redis", () => {
    execFileSync("redis-cli", ["-p", String(redisPort), "ping"], { stdio: "ignore" });
    return true;
  });
  start("api", join(BIN, "taskfleet-api"), ["--listen", `127.0.0.1:${apiPort}`, "--test-processors"], env);
  start("worker", join(BIN, "taskfleet-worker"), ["--types", "story_generation,voice_generation,test",
    "--concurrency", "4", "--test-processors"], env);
  start("example", process.execPath, [join(ROOT, "examples/frontend/server.mjs")], {
    PORT: String(examplePort),
    TASKFLEET_API: apiUrl,
    TASKFLEET_JWT_SECRET: secret,
  });
  const stack = {
    dir, apiUrl, exampleUrl, adminKey, redisUrl, logs,
    /** An API key made by the CLI, as an operator would. */
    key(account, user, ...flags) {
      return execFileSync(join(BIN, "taskfleet-api"), ["keys", "create", "--account", account, "--user", user, ...flags],
        { env: { ...process.env, ...env }, cwd: ROOT }).toString().trim();
    },
    /** A call to the API as `key`. */
    async call(method, path, key, body) {
      const r = await fetch(`${apiUrl}${path}`, {
        method,
        headers: { authorization: `Bearer ${key}`, ...(body ? { "content-type": "application/json" } : {}) },
        body: body ? JSON.stringify(body) : undefined,
      });
      const text = await r.text();
      return { status: r.status, body: text ? JSON.parse(text) : null };
    },
    /** Stops what was started (by pid: the children of this test only) and leaves only the
     *  screenshots in the temp dir. */
    async stop() {
      for (const c of children) if (c.exitCode === null) c.kill("SIGTERM");
      await Promise.all(children.map((c) => c.exitCode !== null ? null : new Promise((r) => {
        const t = setTimeout(() => { c.kill("SIGKILL"); r(); }, 10_000);
        c.once("exit", () => { clearTimeout(t); r(); });
      })));
      for (const name of readdirSync(dir)) {
        if (!name.endsWith(".png")) rmSync(join(dir, name), { recursive: true, force: true });
      }
    },
  };
  try {
    await until("the API", async () => (await fetch(`${apiUrl}/ready`)).ok);
    await until("the example backend", async () => (await fetch(`${exampleUrl}/config.json`)).ok);
  } catch (e) {
    await stack.stop();
    throw new Error(`${e.message}\n${JSON.stringify(logs, null, 1)}`);
  }
  return stack;
}

/** Debian's Chromium, headless, with a fresh profile. */
export async function launchBrowser(dir) {
  return puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    userDataDir: mkdtempSync(join(dir, "profile-")),
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
      "--disable-dev-shm-usage"],
  });
}

/** A page that fails the test on an uncaught error in the page. */
export async function newPage(browser, errors) {
  const page = await browser.newPage();
  await page.setViewport({ width: 1280, height: 900 });
  page.on("pageerror", (e) => errors.push(`pageerror: ${e.message}`));
  return page;
}

/** Saves a screenshot under `dir` and checks that it is not blank: a PNG whose pixels take
 *  many values (a blank page's take one or two). Returns its path. */
export async function screenshot(page, dir, name) {
  const path = join(dir, `${name}.png`);
  const png = Buffer.from(await page.screenshot({ type: "png", fullPage: true }));
  writeFileSync(path, png);
  const distinct = distinctPixelBytes(png);
  if (distinct < 24) throw new Error(`${path} looks blank (${distinct} distinct byte values)`);
  return path;
}

/** How many distinct byte values the decompressed image data of a PNG holds (its IDAT
 *  chunks inflated: filter bytes and pixels). */
function distinctPixelBytes(png) {
  const chunks = [];
  for (let at = 8; at < png.length;) {
    const len = png.readUInt32BE(at);
    const type = png.toString("ascii", at + 4, at + 8);
    if (type === "IDAT") chunks.push(png.subarray(at + 8, at + 8 + len));
    at += 12 + len;
  }
  const data = inflateSync(Buffer.concat(chunks));
  const seen = new Set();
  for (let i = 0; i < data.length && seen.size < 256; i += 7) seen.add(data[i]);
  return seen.size;
}
