// The typed client of the taskfleet REST API. `schema.ts` is generated from the API's OpenAPI
// document by openapi-typescript (`npm run generate`; never edit it by hand); this file adds
// the few things a frontend needs around it: a client that sends the caller's credential,
// the shapes the seed's frontend uses (`Task`, `TaskEvent`), and following a task's progress
// with `EventSource`.

import createClient, { type Client, type Middleware } from "openapi-fetch";
import type { components, paths } from "./schema.js";

export type { components, paths };

type Schemas = components["schemas"];

/** A task as GET /api/tasks/{id} answers it (the OpenAPI schema `Task`). */
export type Task = Schemas["Task"];
/** Where a task is: scheduled, queued, processing, retrying, completed, failed, cancelled. */
export type TaskStatus = Schemas["TaskStatus"];
/** One Server-Sent Event of GET /api/tasks/{id}/events as the document describes it: its
 *  `id` (to resume from), `event` (the status, or `error`) and `data` (the task as JSON). */
export type TaskEvent = Schemas["TaskEvent"];
/** The answer to every enqueue (202). */
export type EnqueueResponse = Schemas["EnqueueResponse"];
/** Every non-2xx answer: `{"error": {"code", "message"}}`. */
export type ErrorBody = Schemas["ErrorBody"];
export type TaskList = Schemas["TaskList"];
export type QueueStatus = Schemas["QueueStatusResponse"];
export type History = Schemas["HistoryResponse"];
export type StoryRequest = Schemas["StoryRequest"];
export type VoiceRequest = Schemas["VoiceRequest"];
export type VideoRequest = Schemas["VideoRequest"];
export type ImageRequest = Schemas["ImageRequest"];
export type Schedule = Schemas["Schedule"];
export type ScheduleList = Schemas["ScheduleList"];
export type CreateSchedule = Schemas["CreateSchedule"];
export type BulkRetry = Schemas["BulkRetry"];
export type BulkRetryResponse = Schemas["BulkRetryResponse"];
/** Batches (issue 13): many tasks enqueued all or none, followed and cancelled as one. */
export type CreateBatch = Schemas["CreateBatch"];
export type BatchCreated = Schemas["BatchCreatedResponse"];
export type Batch = Schemas["BatchView"];
/** A webhook delivery with its attempts (`GET /api/tasks/{id}/webhooks`). */
export type WebhookDelivery = Schemas["DeliveryView"];

/** The states after which a task never changes. */
export const TERMINAL: readonly TaskStatus[] = ["completed", "failed", "cancelled"];
/** Every state, in lifecycle order. */
export const STATUSES: readonly TaskStatus[] = [
  "scheduled",
  "queued",
  "processing",
  "retrying",
  "completed",
  "failed",
  "cancelled",
];

/** The caller's credential: an API key (server side only) or the application's short-lived
 *  token (a JWT minted by the application's backend; what a browser holds). Called before each
 *  request, so a refreshed token is used as soon as it exists. */
export type Credential = () => string | Promise<string>;

export interface TaskfleetOptions {
  /** The API's base URL, e.g. `https://tasks.example.com` (no trailing slash). */
  baseUrl: string;
  credential: Credential;
  /** A fetch of your own (tests, server-side runtimes). */
  fetch?: typeof fetch;
}

export type TaskfleetClient = Client<paths>;

/** A client of every route of the document, typed by path and method, that sends
 *  `Authorization: Bearer <credential>` with each request. */
export function createTaskfleetClient(options: TaskfleetOptions): TaskfleetClient {
  const client = createClient<paths>({
    baseUrl: options.baseUrl,
    ...(options.fetch ? { fetch: options.fetch } : {}),
  });
  const auth: Middleware = {
    async onRequest({ request }) {
      request.headers.set("Authorization", `Bearer ${await options.credential()}`);
      return request;
    },
  };
  client.use(auth);
  return client;
}

/** What `followTask` reports: each state of the task as it changes. */
export interface TaskUpdate {
  /** The event's id (what `Last-Event-ID` resumes from). */
  id: string;
  task: Task;
}

export interface FollowOptions {
  baseUrl: string;
  /** The application's token (a JWT): sent as `?access_token=`, since EventSource sends no
   *  header. The API refuses an API key there. */
  token: string;
  onUpdate: (update: TaskUpdate) => void;
  /** The stream ended early (Redis away, the token refused): the last error body if any. */
  onError?: (error: ErrorBody | null) => void;
  /** An EventSource of your own (tests, polyfills). */
  EventSource?: typeof EventSource;
}

/** Follows a task's progress with `EventSource` until it is completed, failed or cancelled
 *  (then the stream is closed); returns a function that stops following. EventSource
 *  reconnects by itself with `Last-Event-ID`, and the API sends only what changed. */
export function followTask(taskId: string, options: FollowOptions): () => void {
  const Source = options.EventSource ?? EventSource;
  const url =
    `${options.baseUrl}/api/tasks/${encodeURIComponent(taskId)}/events` +
    `?access_token=${encodeURIComponent(options.token)}`;
  const source = new Source(url);
  const onState = (e: MessageEvent<string>) => {
    const task = JSON.parse(e.data) as Task;
    options.onUpdate({ id: e.lastEventId, task });
    if (TERMINAL.includes(task.status)) source.close();
  };
  for (const status of STATUSES) source.addEventListener(status, onState);
  source.addEventListener("error", (e) => {
    const data = (e as MessageEvent<string>).data;
    // A server's `event: error` carries a body; a lost connection does not, and EventSource
    // tries again unless the answer said not to (a 204 or an error status closes it).
    if (data || source.readyState === Source.CLOSED) {
      source.close();
      options.onError?.(data ? (JSON.parse(data) as ErrorBody) : null);
    }
  });
  return () => source.close();
}

/** Downloads an artifact with the credential (a plain link cannot send one): its bytes as a
 *  Blob, with the media type the API sent. */
export async function downloadArtifact(
  options: TaskfleetOptions,
  taskId: string,
  name: string,
): Promise<Blob> {
  const doFetch = options.fetch ?? fetch;
  const url =
    `${options.baseUrl}/api/tasks/${encodeURIComponent(taskId)}` +
    `/artifacts/${encodeURIComponent(name)}`;
  const response = await doFetch(url, {
    headers: { Authorization: `Bearer ${await options.credential()}` },
  });
  if (!response.ok) {
    const body = (await response.json().catch(() => null)) as ErrorBody | null;
    throw new Error(body?.error.message ?? `${response.status} ${response.statusText}`);
  }
  return response.blob();
}
