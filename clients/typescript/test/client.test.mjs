// The hand-written part of the client (src/index.ts, built to dist/): the credential on every
// request, typed paths through openapi-fetch, EventSource following that stops at the end.
// No network: a fetch and an EventSource of the test's own. (The real API and a real browser
// are tests/browser's.)
import assert from "node:assert/strict";
import { test } from "node:test";

import { createTaskfleetClient, downloadArtifact, followTask, TERMINAL } from "../dist/index.js";

function recordingFetch(answer) {
  const seen = [];
  const f = async (input, init) => {
    const request = input instanceof Request ? input : new Request(input, init);
    seen.push(request);
    return new Response(JSON.stringify(answer.body), {
      status: answer.status,
      headers: { "content-type": "application/json" },
    });
  };
  return { f, seen };
}

test("every request carries the credential, read afresh each time", async () => {
  const { f, seen } = recordingFetch({ status: 200, body: { tasks: [], next_cursor: null } });
  let n = 0;
  const client = createTaskfleetClient({
    baseUrl: "http://api.test",
    credential: () => `token-${++n}`,
    fetch: f,
  });
  const { data, error } = await client.GET("/api/tasks", { params: { query: { limit: 5 } } });
  assert.equal(error, undefined);
  assert.deepEqual(data, { tasks: [], next_cursor: null });
  await client.GET("/api/tasks/{id}", { params: { path: { id: "abc" } } });
  assert.equal(seen[0].url, "http://api.test/api/tasks?limit=5");
  assert.equal(seen[0].headers.get("authorization"), "Bearer token-1");
  assert.equal(seen[1].url, "http://api.test/api/tasks/abc");
  assert.equal(seen[1].headers.get("authorization"), "Bearer token-2");
});

test("an error answer comes back as the API's error body", async () => {
  const body = { error: { code: "not_found", message: "no such task" } };
  const { f } = recordingFetch({ status: 404, body });
  const client = createTaskfleetClient({ baseUrl: "http://api.test", credential: () => "t", fetch: f });
  const { data, error, response } = await client.POST("/api/tasks/{id}/retry", {
    params: { path: { id: "abc" } },
  });
  assert.equal(data, undefined);
  assert.equal(response.status, 404);
  assert.deepEqual(error, body);
});

class FakeSource {
  static CLOSED = 2;
  static last = null;
  constructor(url) {
    this.url = url;
    this.readyState = 1;
    this.listeners = {};
    FakeSource.last = this;
  }
  addEventListener(name, f) {
    (this.listeners[name] ??= []).push(f);
  }
  close() {
    this.readyState = FakeSource.CLOSED;
  }
  emit(name, data, lastEventId = "") {
    for (const f of this.listeners[name] ?? []) f({ data, lastEventId });
  }
}

test("following a task reports each state and closes at the end", () => {
  const updates = [];
  followTask("t 1", {
    baseUrl: "http://api.test",
    token: "a.b.c",
    onUpdate: (u) => updates.push(u),
    EventSource: FakeSource,
  });
  const source = FakeSource.last;
  assert.equal(source.url, "http://api.test/api/tasks/t%201/events?access_token=a.b.c");
  source.emit("queued", JSON.stringify({ id: "t 1", status: "queued" }), "1-0.aa");
  assert.equal(source.readyState, 1);
  source.emit("completed", JSON.stringify({ id: "t 1", status: "completed" }), "2-0.bb");
  assert.deepEqual(
    updates.map((u) => [u.id, u.task.status]),
    [["1-0.aa", "queued"], ["2-0.bb", "completed"]],
  );
  assert.equal(source.readyState, FakeSource.CLOSED);
  assert.deepEqual([...TERMINAL], ["completed", "failed", "cancelled"]);
});

test("an artifact downloads with the credential", async () => {
  const seen = [];
  const f = async (url, init) => {
    seen.push([url, init.headers.Authorization]);
    return new Response("story text", { status: 200, headers: { "content-type": "text/markdown" } });
  };
  const blob = await downloadArtifact(
    { baseUrl: "http://api.test", credential: () => "k", fetch: f },
    "abc",
    "story.md",
  );
  assert.equal(await blob.text(), "story text");
  assert.deepEqual(seen, [["http://api.test/api/tasks/abc/artifacts/story.md", "Bearer k"]]);
});
