// The dashboard (GET /dashboard, served by the API) in a real headless Chromium against a real
// API, worker and Redis: an admin pauses and resumes a type, cancels a queued task, retries a
// failed one, cleans up, and sees the counts change live (over the status stream) and the last
// hour drawn as charts; an account admin sees only its account and no admin controls. Every
// step asserts on the page's DOM; a screenshot of each page is checked to be non-blank.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { launchBrowser, newPage, screenshot, startStack } from "./stack.mjs";

let stack;
let browser;
const errors = [];

before(async () => {
  stack = await startStack();
  browser = await launchBrowser(stack.dir);
});

after(async () => {
  await browser?.close();
  await stack?.stop();
  console.log(`screenshots in ${stack?.dir}`);
});

const cellOf = (page, type, state) =>
  page.$eval(`#types tr[data-type="${type}"] td.count-${state}`, (td) => td.textContent).catch(() => null);

async function enqueue(key, request) {
  const r = await stack.call("POST", "/api/tasks", key, { task_type: "test", request });
  assert.equal(r.status, 202, JSON.stringify(r.body));
  return r.body.task_id;
}

test("the dashboard acts for an admin and shows an account admin only its account", async (t) => {
  const alice = stack.key("acme", "alice");
  const bob = stack.key("globex", "bob");
  const lead = stack.key("acme", "ada", "--account-admin");
  const page = await newPage(browser, errors);
  let acmeFailed;
  let globexFailed;

  await t.test("an admin signs in and the counts go live", async () => {
    await page.goto(`${stack.apiUrl}/dashboard#key=${encodeURIComponent(stack.adminKey)}`, { waitUntil: "domcontentloaded" });
    await page.waitForFunction(() => document.querySelector("#live").textContent === "live");
    assert.match(await page.$eval("#scope", (e) => e.textContent), /^admin .*every account/);
    assert.equal(await page.$eval("#admin-controls", (e) => e.hidden), false);
    await page.waitForSelector('#types tr[data-type="test"] button.pause');
  });

  await t.test("pauses a type, and new tasks wait in its queue, counted live", async () => {
    await page.click('#types tr[data-type="test"] button.pause');
    await page.waitForFunction(() => document.querySelector("#action-status").textContent === "Paused test");
    await page.waitForSelector('#types tr[data-type="test"] button.resume');
    assert.equal(await page.$eval('#types tr[data-type="test"] td.paused', (td) => td.textContent), "paused");
    // Made elsewhere: only the live stream can tell the page.
    await enqueue(alice, { op: "noop" });
    await enqueue(bob, { op: "noop" });
    await page.waitForFunction(() => document.querySelector('#types tr[data-type="test"] td.count-queued').textContent === "2", { timeout: 30_000 });
    await page.waitForFunction(() => document.querySelectorAll("#queued tbody tr").length === 2);
  });

  await t.test("cancels a queued task", async () => {
    const id = await page.$eval("#queued tbody tr", (tr) => tr.dataset.id);
    await page.click(`#queued tbody tr[data-id="${id}"] button.cancel`);
    await page.waitForFunction((id) => document.querySelector("#action-status").textContent === `Cancelled ${id}`, {}, id);
    await page.waitForFunction(() => document.querySelectorAll("#queued tbody tr").length === 1);
    await page.waitForFunction(() => document.querySelector('#types tr[data-type="test"] td.count-cancelled').textContent === "1", { timeout: 30_000 });
    const task = await stack.call("GET", `/api/tasks/${id}`, stack.adminKey);
    assert.equal(task.body.status, "cancelled");
  });

  await t.test("resumes the type, and the other task completes", async () => {
    await page.click('#types tr[data-type="test"] button.resume');
    await page.waitForFunction(() => document.querySelector("#action-status").textContent === "Resumed test");
    await page.waitForSelector('#types tr[data-type="test"] button.pause');
    await page.waitForFunction(() => document.querySelector('#types tr[data-type="test"] td.count-completed').textContent === "1", { timeout: 30_000 });
    assert.equal(await cellOf(page, "test", "queued"), "0");
  });

  await t.test("retries a failed task", async () => {
    acmeFailed = await enqueue(alice, { op: "permanent" });
    globexFailed = await enqueue(bob, { op: "permanent" });
    await page.waitForFunction((id) => document.querySelector(`#failed tbody tr[data-id="${id}"]`), { timeout: 30_000 }, acmeFailed);
    await page.waitForSelector(`#failed tbody tr[data-id="${globexFailed}"]`);
    await page.click(`#failed tbody tr[data-id="${acmeFailed}"] button.retry`);
    await page.waitForFunction((id) => document.querySelector("#action-status").textContent === `Retried ${id}`, {}, acmeFailed);
    // The worker runs it again; it fails again, now with its first ending kept.
    await page.waitForFunction((id) => document.querySelector(`#failed tbody tr[data-id="${id}"] td.retried`)?.textContent === "1", { timeout: 30_000 }, acmeFailed);
    const task = await stack.call("GET", `/api/tasks/${acmeFailed}`, stack.adminKey);
    assert.equal(task.body.previous_errors.length, 1);
  });

  await t.test("cleans up stuck tasks", async () => {
    await page.$eval("#cleanup-minutes", (e) => { e.value = "30"; });
    await page.click("#cleanup");
    await page.waitForFunction(() => document.querySelector("#action-status").textContent.startsWith("Cleanup: "));
    assert.match(await page.$eval("#action-status", (e) => e.textContent), /^Cleanup: 0 taken back/);
  });

  await t.test("draws the last hour of each type as small charts", async () => {
    await page.waitForFunction(() => Number(document.querySelector('svg.throughput[data-type="test"]')?.dataset.total) > 0, { timeout: 30_000 });
    const charts = await page.$$eval("svg.chart polyline", (ls) => ls.length);
    const types = await page.$$eval("#types tbody tr", (rs) => rs.length);
    assert.equal(charts, 2 * types, "a throughput and a latency chart per type");
    assert.ok(Number(await page.$eval('svg.latency[data-type="test"]', (s) => s.dataset.max)) >= 1);
    await screenshot(page, stack.dir, "dashboard-admin");
  });

  await t.test("an account admin sees only its account, without admin controls", async () => {
    const other = await newPage(browser, errors);
    await other.goto(`${stack.apiUrl}/dashboard#key=${encodeURIComponent(lead)}`, { waitUntil: "domcontentloaded" });
    await other.waitForFunction(() => document.querySelector("#live").textContent === "live");
    assert.match(await other.$eval("#scope", (e) => e.textContent), /account admin ada of acme/);
    assert.equal(await other.$eval("#admin-controls", (e) => e.hidden), true);
    assert.equal(await other.$$eval("#types button.pause, #types button.resume", (b) => b.length), 0);
    await other.waitForFunction((id) => document.querySelector(`#failed tbody tr[data-id="${id}"]`), {}, acmeFailed);
    const failed = await other.$$eval("#failed tbody tr", (rs) => rs.map((r) => r.dataset.id));
    assert.ok(!failed.includes(globexFailed), "globex's failed task shows to acme's account admin");
    const accounts = await other.$$eval("#failed tbody tr td:nth-child(3)", (tds) => [...new Set(tds.map((td) => td.textContent))]);
    assert.deepEqual(accounts, ["acme"]);
    // Its counts are acme's: one cancelled (alice's noop was cancelled or completed) and the failure.
    assert.equal(await cellOf(other, "test", "failed"), "1");
    // It may act on its account's tasks.
    // Clicked in the page, on the row as it is now: a live update may redraw the table between
    // finding the button and a click from outside, leaving that node detached.
    await other.waitForFunction((id) => {
      const b = document.querySelector(`#failed tbody tr[data-id="${id}"] button.retry`);
      if (b) b.click();
      return Boolean(b);
    }, {}, acmeFailed);
    await other.waitForFunction((id) => document.querySelector("#action-status").textContent === `Retried ${id}`, {}, acmeFailed);
    await screenshot(other, stack.dir, "dashboard-account-admin");
  });

  assert.deepEqual(errors, []);
});
