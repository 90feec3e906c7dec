// The example frontend (examples/frontend), served from another origin than the API, in a real
// headless Chromium: sign in as a user (a token minted by the example backend), generate a
// story and a voice, watch their progress live (EventSource), cancel a video, list my tasks,
// download an artifact. Every step asserts on the page's DOM; a screenshot of the page is saved
// under the test's temp dir and checked to be non-blank.
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

/** The status cell of the row of the newest task of `type`. */
async function statusOf(page, type) {
  return page.evaluate((type) => {
    const row = [...document.querySelectorAll("#task-table tbody tr")].find(
      (r) => r.querySelector(".type")?.textContent === type,
    );
    return row?.querySelector(".status")?.textContent ?? null;
  }, type);
}

test("the example frontend does every step from another origin", async (t) => {
  assert.notEqual(new URL(stack.exampleUrl).origin, new URL(stack.apiUrl).origin);
  const page = await newPage(browser, errors);
  const requests = [];
  page.on("request", (r) => requests.push(r.url()));
  await page.goto(stack.exampleUrl, { waitUntil: "networkidle0" });
  await page.waitForSelector("body[data-ready=true]");

  await t.test("signs in as a user with a token its backend minted", async () => {
    await page.select("#user", "alice");
    await page.click("#sign-in");
    await page.waitForFunction(() => document.querySelector("#whoami").textContent.includes("alice"));
    const who = await page.$eval("#whoami", (e) => e.textContent);
    assert.equal(who, "Signed in as alice of acme (user)");
    assert.equal(await page.$eval("#create", (e) => e.hidden), false);
    await screenshot(page, stack.dir, "example-signed-in");
  });

  await t.test("generates a story and watches it to completed, live", async () => {
    // Stories are held in their queue (an operator's pause) until the page follows this one,
    // so its completion can only reach the page through the event stream.
    const stop = await stack.call("POST", "/api/tasks/queue/stop", stack.adminKey, { task_type: "story_generation" });
    assert.equal(stop.status, 200);
    await page.click("#story-submit");
    await page.waitForFunction(() => document.querySelector("#notice").textContent.startsWith("Enqueued story_generation"));
    await page.waitForFunction(() => [...document.querySelectorAll("#task-table tbody tr")].some(
      (r) => r.querySelector(".type").textContent === "story_generation" && r.querySelector(".status").textContent === "queued"));
    const eventsUrl = () => requests.find((u) => u.startsWith(`${stack.apiUrl}/api/tasks/`) && u.includes("/events?access_token="));
    for (let i = 0; i < 100 && !eventsUrl(); i++) await new Promise((r) => setTimeout(r, 50));
    assert.ok(eventsUrl(), "the page opened the task's event stream on the API's origin");
    const start = await stack.call("POST", "/api/tasks/queue/start", stack.adminKey, { task_type: "story_generation" });
    assert.equal(start.status, 200);
    await page.waitForFunction(
      () => [...document.querySelectorAll("#task-table tbody tr")].some(
        (r) => r.querySelector(".type").textContent === "story_generation" && r.querySelector(".status").textContent === "completed"),
      { timeout: 60_000 },
    );
    assert.equal(await statusOf(page, "story_generation"), "completed");
  });

  await t.test("generates a voice and watches it to completed", async () => {
    await page.click("#voice-submit");
    await page.waitForFunction(
      () => [...document.querySelectorAll("#task-table tbody tr")].some(
        (r) => r.querySelector(".type").textContent === "voice_generation" && r.querySelector(".status").textContent === "completed"),
      { timeout: 60_000 },
    );
    const progress = await page.evaluate(() => {
      const row = [...document.querySelectorAll("#task-table tbody tr")].find((r) => r.querySelector(".type").textContent === "voice_generation");
      return row.querySelector("progress").value;
    });
    assert.equal(progress, 100);
    await screenshot(page, stack.dir, "example-generated");
  });

  await t.test("cancels a video", async () => {
    // No worker serves video here: it waits in its queue until cancelled.
    await page.click("#video-submit");
    await page.waitForFunction(() => [...document.querySelectorAll("#task-table tbody tr")].some(
      (r) => r.querySelector(".type").textContent === "video" && r.querySelector("button.cancel")));
    assert.equal(await statusOf(page, "video"), "queued");
    await page.evaluate(() => {
      const row = [...document.querySelectorAll("#task-table tbody tr")].find((r) => r.querySelector(".type").textContent === "video");
      row.querySelector("button.cancel").click();
    });
    await page.waitForFunction(() => document.querySelector("#notice").textContent.startsWith("Cancelled"));
    await page.waitForFunction(() => [...document.querySelectorAll("#task-table tbody tr")].some(
      (r) => r.querySelector(".type").textContent === "video" && r.querySelector(".status").textContent === "cancelled"));
    assert.equal(await statusOf(page, "video"), "cancelled");
  });

  await t.test("lists my tasks, and only mine", async () => {
    // A colleague's task (bob, same account) must not show in alice's list.
    const bob = stack.key("acme", "bob");
    const theirs = await stack.call("POST", "/api/story/generate", bob, { prompt: "bob's own story" });
    assert.equal(theirs.status, 202);
    await page.click("#refresh");
    await page.waitForFunction(() => document.querySelector("#tasks").dataset.listed === "3");
    const rows = await page.$$eval("#task-table tbody tr", (rs) => rs.map((r) => [r.querySelector(".type").textContent, r.querySelector(".status").textContent]));
    assert.deepEqual(rows.map(([type]) => type).sort(), ["story_generation", "video", "voice_generation"]);
    const ids = await page.$$eval("#task-table tbody tr", (rs) => rs.map((r) => r.dataset.taskId));
    assert.ok(!ids.includes(theirs.body.task_id), "bob's task is in alice's list");
  });

  await t.test("downloads an artifact", async () => {
    await page.evaluate(() => {
      const row = [...document.querySelectorAll("#task-table tbody tr")].find((r) => r.querySelector(".type").textContent === "story_generation");
      row.querySelector("button.download[data-name='story.md']").click();
    });
    await page.waitForFunction(() => document.querySelector("#notice").textContent.startsWith("Downloaded story.md"));
    const bytes = Number(await page.$eval("#notice", (e) => e.dataset.downloaded));
    assert.ok(bytes > 200, `story.md has ${bytes} bytes`);
    assert.match(await page.$eval("#notice", (e) => e.textContent), /text\/markdown/);
    await screenshot(page, stack.dir, "example-downloaded");
  });

  assert.deepEqual(errors, []);
});
