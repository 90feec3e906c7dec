// The example frontend: plain JavaScript over the built TypeScript client. It signs in through
// its own backend (which mints a short-lived taskfleet token), then calls the API on another
// origin (CORS) with that token, follows progress with EventSource, and downloads artifacts.
import { createTaskfleetClient, downloadArtifact, followTask, TERMINAL } from "/vendor/client/index.js";

const config = await (await fetch("/config.json")).json();
const $ = (id) => document.getElementById(id);
let session = null; // { token, expiresAt, user, name, role }
const following = new Map(); // task id -> stop()

async function signIn(user) {
  const r = await fetch("/session", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ user }) });
  if (!r.ok) throw new Error("sign-in refused");
  const s = await r.json();
  session = { ...s, expiresAt: Date.now() + s.expires_in * 1000 };
}

/** The token, minted again by the backend shortly before it expires. */
async function credential() {
  if (session && Date.now() > session.expiresAt - 60_000) await signIn(session.user);
  return session.token;
}

const options = { baseUrl: config.api, credential };
const api = createTaskfleetClient(options);

function notice(text) {
  $("notice").textContent = text;
}

/** The row of a task, made if missing, updated from the task. */
function render(task) {
  const body = document.querySelector("#task-table tbody");
  let row = body.querySelector(`tr[data-task-id="${task.id}"]`);
  if (!row) {
    row = document.createElement("tr");
    row.dataset.taskId = task.id;
    row.innerHTML = '<td class="task"></td><td class="type"></td><td class="status"></td><td class="progress"><progress max="100"></progress></td><td class="message"></td><td class="actions"></td>';
    row.querySelector(".task").textContent = `…${task.id.slice(-12)}`;
    row.querySelector(".task").title = task.id;
    body.prepend(row);
  }
  row.querySelector(".type").textContent = task.task_type;
  const status = row.querySelector(".status");
  status.textContent = task.status;
  status.className = `status status-${task.status}`;
  row.querySelector("progress").value = task.status === "completed" ? 100 : task.progress;
  row.querySelector(".message").textContent = task.error ?? task.message ?? "";
  const actions = row.querySelector(".actions");
  actions.replaceChildren();
  if (!TERMINAL.includes(task.status)) actions.append(button("Cancel", "cancel", () => cancel(task.id)));
  if (task.status === "failed" || task.status === "cancelled") actions.append(button("Retry", "retry", () => retry(task.id)));
  for (const a of task.result?.artifacts ?? []) {
    const b = button(`Download ${a.name}`, "download", () => download(task.id, a.name));
    b.dataset.name = a.name;
    actions.append(b);
  }
}

function button(label, cls, onClick) {
  const b = document.createElement("button");
  b.type = "button";
  b.className = cls;
  b.textContent = label;
  b.onclick = () => onClick().catch((e) => notice(e.message));
  return b;
}

/** Live progress: EventSource with the token in the query (it cannot send a header). */
async function follow(task) {
  render(task);
  if (TERMINAL.includes(task.status) || following.has(task.id)) return;
  const stop = followTask(task.id, {
    baseUrl: config.api,
    token: await credential(),
    onUpdate: ({ task }) => {
      render(task);
      if (TERMINAL.includes(task.status)) following.delete(task.id);
    },
    onError: (e) => {
      following.delete(task.id);
      if (e) notice(`Progress of ${task.id.slice(-12)} stopped: ${e.error.message}`);
    },
  });
  following.set(task.id, stop);
}

function failure(error, response) {
  return new Error(error?.error?.message ?? `${response.status} ${response.statusText}`);
}

async function created({ data, error, response }) {
  if (error) throw failure(error, response);
  notice(`Enqueued ${data.task_type} ${data.task_id.slice(-12)} (about ${data.estimated_completion_minutes} min)`);
  const got = await api.GET("/api/tasks/{id}", { params: { path: { id: data.task_id } } });
  if (got.error) throw failure(got.error, got.response);
  await follow(got.data);
}

async function cancel(id) {
  const { data, error, response } = await api.POST("/api/tasks/{id}/cancel", { params: { path: { id } } });
  if (error) throw failure(error, response);
  notice(data.status === "cancelled" ? `Cancelled ${id.slice(-12)}` : `Asked the worker to stop ${id.slice(-12)}`);
  const got = await api.GET("/api/tasks/{id}", { params: { path: { id } } });
  if (!got.error) render(got.data);
}

async function retry(id) {
  const { data, error, response } = await api.POST("/api/tasks/{id}/retry", { params: { path: { id } } });
  if (error) throw failure(error, response);
  notice(`Retrying ${id.slice(-12)}`);
  await follow(data);
}

async function download(id, name) {
  const blob = await downloadArtifact(options, id, name);
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url;
  a.download = name;
  a.click();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
  notice(`Downloaded ${name} (${blob.size} bytes, ${blob.type})`);
  $("notice").dataset.downloaded = String(blob.size);
}

async function listMine() {
  const { data, error, response } = await api.GET("/api/tasks", { params: { query: { limit: 50 } } });
  if (error) throw failure(error, response);
  document.querySelector("#task-table tbody").replaceChildren();
  for (const task of [...data.tasks].reverse()) await follow(task);
  $("tasks").dataset.listed = String(data.tasks.length);
}

for (const u of config.users) $("user").append(new Option(u.name, u.id));
$("sign-in").onclick = async () => {
  try {
    for (const stop of following.values()) stop();
    following.clear();
    await signIn($("user").value);
    const me = await api.GET("/api/me");
    if (me.error) throw failure(me.error, me.response);
    $("whoami").textContent = `Signed in as ${me.data.user_id} of ${me.data.account_id} (${me.data.role})`;
    $("create").hidden = false;
    $("tasks").hidden = false;
    notice("");
    await listMine();
  } catch (e) {
    notice(e.message);
  }
};
$("refresh").onclick = () => listMine().catch((e) => notice(e.message));
const submit = (form, call) => {
  $(form).onsubmit = (e) => {
    e.preventDefault();
    call().then(created).catch((err) => notice(err.message));
  };
};
submit("story-form", () => api.POST("/api/story/generate", { body: { prompt: $("story-prompt").value, length: $("story-length").value } }));
submit("voice-form", () => api.POST("/api/voice-generation/generate", { body: { text: $("voice-text").value } }));
submit("video-form", () => api.POST("/api/video/generate", { body: { title: $("video-title").value, slides: [{ title: $("video-title").value, text: $("video-slide").value }] } }));
document.body.dataset.ready = "true";
