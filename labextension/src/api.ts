/**
 * Client for the jupyter-vqpu server extension's HTTP API.
 *
 * All paths are relative to the server base URL (`vqpu/api/...`); requests go
 * through `ServerConnection.makeRequest`, so token / XSRF handling is the same
 * as for JupyterLab's own services.
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

import { VqpuApiError } from './apiError';
import type { TaskState } from './states';

export { VqpuApiError } from './apiError';

export const API_PREFIX = 'vqpu/api';

export type DeviceStatus = 'online' | 'draining' | 'offline' | string;

export interface IDevice {
  name: string;
  status: DeviceStatus;
  num_qubits?: number | null;
  queue_depth?: number | null;
  held?: number | boolean | null;
  agents?: unknown[];
  offline_since?: number | null;
  snapshot_id?: string | null;
  snapshot_version?: string | number | null;
  snapshot_at?: number | null;
  snapshot_age_s?: number | null;
}

export interface ITaskView {
  task_id: string;
  device: string;
  owner?: string | null;
  name?: string | null;
  /** A TaskState; typed wider so a newer server's state still shows. */
  state: TaskState | string;
  shots?: number | null;
  seed?: number | null;
  snapshot_id?: string | null;
  attempts?: number | null;
  agent?: string | null;
  executor?: string | null;
  job_id?: string | number | null;
  job_reason?: string | null;
  reason?: string | null;
  error?: string | null;
  queue_position?: number | null;
  created_at?: number | null;
  claimed_at?: number | null;
  scheduled_at?: number | null;
  started_at?: number | null;
  finished_at?: number | null;
  updated_at?: number | null;
  counts?: { [bitstring: string]: number } | null;
  tags?: string[] | null;
  notice?: string | null;
  pinned?: boolean | null;
  /** Only in one task's view (`tasks/{id}`): its transitions, oldest first. */
  history?: IHistoryEntry[] | null;
  /** Only once completed: where the task's time went (seconds). */
  phases?: { [phase: string]: number } | null;
  simulator?: { method?: string; device?: string; reason?: string } | null;
  timings?: { [step: string]: number } | null;
  layout?: number[] | null;
}

/** One transition of a task (`history` of `tasks/{id}`). */
export interface IHistoryEntry {
  /** Server time, epoch milliseconds. */
  ts: number;
  event: string;
  agent?: string;
  /** The attempt number of the claim this entry is about. */
  attempt?: number;
  /** The claim's fencing token: opaque (`<attempt>-<nonce>`), unique per claim. */
  token?: string;
  reason?: string;
  by?: string;
  job_id?: string;
  [field: string]: unknown;
}

/** `tasks/{id}/circuit`: what the task runs, as submitted and as transpiled for the device. */
export interface ITaskCircuit {
  task_id: string;
  format: string;
  circuit: string;
  /** OpenQASM 3; null until it ran (or when it was too long to keep). */
  transpiled_qasm: string | null;
}

/** A message on `vqpu/api/events` (WebSocket) or from the long-poll fallback. */
export interface IEventMessage {
  type?: 'event' | 'devices' | string;
  device?: string;
  id?: string;
  event?: string;
  task?: string | null;
  data?: { [key: string]: unknown };
  devices?: IDevice[];
  /** The control plane as the service last found it (with device lists and errors). */
  control_plane?: { state: string; message?: string; hint?: string };
  message?: string;
  hint?: string;
}

const NOT_INSTALLED_HINT =
  'Is the jupyter-vqpu server extension installed and enabled? ' +
  'Check with `jupyter server extension list`.';

/** Turn a failed response into a VqpuApiError (never throws itself). */
async function toApiError(response: Response): Promise<VqpuApiError> {
  /** The server's error body: `{"error", "message", "hint"}`. */
  let body: { error?: unknown; message?: unknown; hint?: unknown } | null =
    null;
  try {
    const text = await response.text();
    body = text ? JSON.parse(text) : null;
  } catch {
    body = null;
  }
  if (body && typeof body === 'object' && (body.message || body.error)) {
    return new VqpuApiError(
      String(body.message || body.error),
      response.status,
      body.error ? String(body.error) : null,
      body.hint ? String(body.hint) : null
    );
  }
  if (response.status === 404 && !body) {
    return new VqpuApiError(
      'The vQPU API is not available (HTTP 404).',
      404,
      'not_found',
      NOT_INSTALLED_HINT
    );
  }
  if (response.status === 403 || response.status === 401) {
    return new VqpuApiError(
      `Not authorised to use the vQPU API (HTTP ${response.status}).`,
      response.status,
      'forbidden',
      'Reload the page to log in again.'
    );
  }
  return new VqpuApiError(
    `vQPU API request failed: HTTP ${response.status} ${response.statusText}`.trim(),
    response.status
  );
}

/**
 * Call `vqpu/api/<path>` and return the decoded JSON body.
 *
 * Network failures and non-2xx responses are thrown as VqpuApiError.
 */
export async function requestAPI<T>(
  path: string,
  init: RequestInit = {},
  settings: ServerConnection.ISettings = ServerConnection.makeSettings()
): Promise<T> {
  const url = URLExt.join(settings.baseUrl, API_PREFIX, path);
  let response: Response;
  try {
    response = await ServerConnection.makeRequest(url, init, settings);
  } catch (err) {
    throw new VqpuApiError(
      `Cannot reach the Jupyter server: ${(err as Error).message || err}`,
      null,
      'network',
      'Check that the Jupyter server is still running.'
    );
  }
  if (!response.ok) {
    throw await toApiError(response);
  }
  const text = await response.text();
  if (!text) {
    return undefined as unknown as T;
  }
  try {
    return JSON.parse(text) as T;
  } catch {
    throw new VqpuApiError(
      `The vQPU API returned something that is not JSON for ${API_PREFIX}/${path}.`,
      response.status,
      'bad_response',
      NOT_INSTALLED_HINT
    );
  }
}

export function listDevices(
  settings?: ServerConnection.ISettings
): Promise<IDevice[]> {
  return requestAPI<IDevice[]>('devices', {}, settings);
}

/** Tasks the panel asks for (newest first; the server allows 1 to 500, 50 without a limit). */
export const TASK_LIST_LIMIT = 200;

export function listTasks(
  settings?: ServerConnection.ISettings,
  limit: number = TASK_LIST_LIMIT
): Promise<ITaskView[]> {
  const query = URLExt.objectToQueryString({ limit: String(limit) });
  return requestAPI<ITaskView[]>(`tasks${query}`, {}, settings);
}

export function getTask(
  id: string,
  settings?: ServerConnection.ISettings
): Promise<ITaskView> {
  return requestAPI<ITaskView>(
    `tasks/${encodeURIComponent(id)}`,
    {},
    settings
  );
}

export function getTaskCircuit(
  id: string,
  settings?: ServerConnection.ISettings
): Promise<ITaskCircuit> {
  return requestAPI<ITaskCircuit>(
    `tasks/${encodeURIComponent(id)}/circuit`,
    {},
    settings
  );
}

export function cancelTask(
  id: string,
  settings?: ServerConnection.ISettings
): Promise<ITaskView> {
  return requestAPI<ITaskView>(
    `tasks/${encodeURIComponent(id)}`,
    { method: 'DELETE' },
    settings
  );
}

/** Response of the long-poll fallback (`vqpu/api/events/poll`). */
export interface IPollResponse {
  cursor?: string | null;
  events?: IEventMessage[];
  devices?: IDevice[];
}

/**
 * Long-poll for events after `cursor` (opaque, from the previous answer; empty
 * for "from now"). The server answers `{"events": [...], "cursor": "..."}`
 * (a bare list of messages is tolerated, keeping the old cursor).
 */
export async function pollEvents(
  cursor: string | null,
  timeoutS: number,
  settings?: ServerConnection.ISettings,
  signal?: AbortSignal
): Promise<IPollResponse> {
  const query = URLExt.objectToQueryString({
    cursor: cursor ?? '',
    timeout: String(timeoutS)
  });
  const body = await requestAPI<IPollResponse | IEventMessage[]>(
    `events/poll${query}`,
    { signal },
    settings
  );
  if (Array.isArray(body)) {
    return { cursor, events: body };
  }
  return body || { cursor, events: [] };
}

/**
 * The WebSocket URL for `vqpu/api/events`, built like JupyterLab's services
 * build theirs: from `settings.wsUrl`, with the token as a `token` query
 * parameter (jupyter_server accepts it there for websockets).
 */
export function eventsWebSocketUrl(
  settings: ServerConnection.ISettings = ServerConnection.makeSettings()
): string {
  let url = URLExt.join(settings.wsUrl, API_PREFIX, 'events');
  const token = settings.token;
  if (token) {
    url += `?token=${encodeURIComponent(token)}`;
  }
  return url;
}
