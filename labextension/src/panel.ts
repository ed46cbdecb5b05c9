/**
 * The "vQPU" left-sidebar panel: devices and the user's tasks, live.
 *
 * Plain DOM inside a Lumino Widget. Rows are keyed (device name / task id)
 * and only replaced when their data change, so DOM hooks used by tests stay
 * stable: `#jp-vqpu-panel`, `.jp-vqpu-device[data-device]`,
 * `.jp-vqpu-device-status`, `.jp-vqpu-task[data-task-id]`, `.jp-vqpu-state`
 * (text = state name, `data-state`), `.jp-vqpu-cancel`.
 */
import { ServerConnection } from '@jupyterlab/services';
import { Message } from '@lumino/messaging';
import { Widget } from '@lumino/widgets';

import {
  FINAL_STATES,
  IDevice,
  IEventMessage,
  ITaskView,
  VqpuApiError,
  cancelTask,
  getTask,
  listDevices,
  listTasks
} from './api';
import { ConnectionMode, EventStream } from './events';
import {
  displayTaskId,
  el,
  firstLine,
  humanizeSeconds,
  shortId
} from './format';

/** Device list refresh period (keeps queue depth / snapshot age honest). */
const DEVICE_REFRESH_MS = 10_000;
/** Full task list refresh period (safety net behind the live events). */
const TASK_REFRESH_MS = 30_000;
/** Ages tick this often. */
const TICK_MS = 1_000;
/** Show at most this many tasks (newest first). */
const MAX_TASKS = 100;

/** Events that change a device's row rather than (only) a task's. */
const DEVICE_EVENTS = new Set([
  'snapshot',
  'agent_online',
  'agent_offline',
  'fenced',
  'queued',
  'claimed',
  'completed',
  'failed',
  'cancelled'
]);

export interface IVqpuPanelOptions {
  settings?: ServerConnection.ISettings;
}

export class VqpuPanel extends Widget {
  constructor(options: IVqpuPanelOptions = {}) {
    super();
    this._settings = options.settings ?? ServerConnection.makeSettings();
    this.id = 'jp-vqpu-panel';
    this.addClass('jp-vqpu-panel');
    this.title.caption = 'vQPU: devices and my tasks';
    this.node.setAttribute('role', 'region');
    this.node.setAttribute('aria-label', 'vQPU panel');
    this._buildSkeleton();
  }

  /** Start loading and listening (idempotent). */
  start(): void {
    if (this._started || this.isDisposed) {
      return;
    }
    this._started = true;
    void this.refreshAll();
    this._stream = new EventStream({
      settings: this._settings,
      onMessage: msg => this._onEvent(msg),
      onMode: (mode, err) => this._onMode(mode, err ?? null)
    });
    this._stream.start();
    this._deviceTimer = window.setInterval(
      () => void this.refreshDevices(),
      DEVICE_REFRESH_MS
    );
    this._taskTimer = window.setInterval(
      () => void this.refreshTasks(),
      TASK_REFRESH_MS
    );
    this._tickTimer = window.setInterval(() => this._tick(), TICK_MS);
  }

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    this._stream?.dispose();
    for (const t of [this._deviceTimer, this._taskTimer, this._tickTimer]) {
      if (t !== null) {
        window.clearInterval(t);
      }
    }
    for (const t of this._taskRefreshTimers.values()) {
      window.clearTimeout(t);
    }
    this._taskRefreshTimers.clear();
    if (this._deviceRefreshTimer !== null) {
      window.clearTimeout(this._deviceRefreshTimer);
    }
    super.dispose();
  }

  /** The current transport for live updates. */
  get connectionMode(): ConnectionMode {
    return this._mode;
  }

  async refreshAll(): Promise<void> {
    await Promise.all([this.refreshDevices(), this.refreshTasks()]);
  }

  async refreshDevices(): Promise<void> {
    try {
      const devices = await listDevices(this._settings);
      this._setDevices(Array.isArray(devices) ? devices : []);
      this._clearError('devices');
    } catch (err) {
      this._setError('devices', err);
    }
  }

  async refreshTasks(): Promise<void> {
    try {
      const tasks = await listTasks(this._settings);
      this._tasks.clear();
      for (const t of Array.isArray(tasks) ? tasks : []) {
        if (t && t.task_id) {
          this._tasks.set(t.task_id, t);
        }
      }
      this._tasksLoaded = true;
      this._renderTasks();
      this._clearError('tasks');
    } catch (err) {
      this._setError('tasks', err);
    }
  }

  async refreshTask(id: string): Promise<void> {
    try {
      const view = await getTask(id, this._settings);
      if (view && view.task_id) {
        this._tasks.set(view.task_id, view);
        this._renderTasks();
      }
      this._clearError(`task:${id}`);
    } catch (err) {
      // Someone else's task (or a purged one): not ours to show.
      if (
        err instanceof VqpuApiError &&
        (err.status === 403 || err.status === 404)
      ) {
        if (this._tasks.delete(id)) {
          this._renderTasks();
        }
        return;
      }
      this._setError(`task:${id}`, err);
    }
  }

  async cancel(id: string): Promise<void> {
    const row = this._taskRows.get(id);
    const button = row?.querySelector<HTMLButtonElement>('.jp-vqpu-cancel');
    if (button) {
      button.disabled = true;
      button.textContent = 'Cancelling…';
    }
    try {
      const view = await cancelTask(id, this._settings);
      if (view && view.task_id) {
        this._tasks.set(view.task_id, view);
      }
      this._clearError(`cancel:${id}`);
      this._renderTasks(true);
    } catch (err) {
      this._setError(`cancel:${id}`, err, `Cancel ${displayTaskId(id)}: `);
      this._renderTasks(true);
    }
  }

  protected onAfterAttach(msg: Message): void {
    super.onAfterAttach(msg);
    this.start();
  }

  protected onAfterShow(msg: Message): void {
    super.onAfterShow(msg);
    this._tick();
  }

  // ---- events -------------------------------------------------------------

  private _onEvent(msg: IEventMessage): void {
    if (!msg || typeof msg !== 'object') {
      return;
    }
    if (msg.type === 'devices' && Array.isArray(msg.devices)) {
      this._setDevices(msg.devices);
      return;
    }
    if (msg.task) {
      this._scheduleTaskRefresh(msg.task);
    }
    if (!msg.task || (msg.event && DEVICE_EVENTS.has(msg.event))) {
      this._scheduleDeviceRefresh();
    }
  }

  private _onMode(mode: ConnectionMode, err: VqpuApiError | null): void {
    const previous = this._mode;
    this._mode = mode;
    this._status.dataset.mode = mode;
    this._status.textContent = {
      connecting: 'connecting…',
      live: 'live',
      polling: 'polling',
      offline: 'offline'
    }[mode];
    this._status.title = {
      connecting: 'Connecting to the vQPU event stream',
      live: 'Live updates over a WebSocket',
      polling: 'Live updates by long-polling (WebSocket unavailable)',
      offline: 'Cannot reach the vQPU event stream; retrying'
    }[mode];
    if (mode === 'offline' && err) {
      this._setError('events', err, 'Live updates: ');
    } else if (mode === 'live' || mode === 'polling') {
      this._clearError('events');
      // Whatever happened while we were not listening: catch up (the first
      // connection needs none, start() has just loaded everything).
      if (previous !== mode && this._everConnected) {
        void this.refreshAll();
      }
      this._everConnected = true;
    }
  }

  private _scheduleTaskRefresh(id: string): void {
    if (this._taskRefreshTimers.has(id)) {
      return;
    }
    this._taskRefreshTimers.set(
      id,
      window.setTimeout(() => {
        this._taskRefreshTimers.delete(id);
        void this.refreshTask(id);
      }, 50)
    );
  }

  private _scheduleDeviceRefresh(): void {
    if (this._deviceRefreshTimer !== null) {
      return;
    }
    this._deviceRefreshTimer = window.setTimeout(() => {
      this._deviceRefreshTimer = null;
      void this.refreshDevices();
    }, 250);
  }

  // ---- errors -------------------------------------------------------------

  private _setError(key: string, err: unknown, prefix = ''): void {
    const e =
      err instanceof VqpuApiError
        ? err
        : new VqpuApiError(String((err as Error)?.message ?? err), null);
    this._errors.set(key, { prefix, message: e.message, hint: e.hint });
    this._renderErrors();
  }

  private _clearError(key: string): void {
    if (this._errors.delete(key)) {
      this._renderErrors();
    }
  }

  private _renderErrors(): void {
    const box = this._errorBox;
    box.textContent = '';
    // The same message from several sources is shown once.
    const seen = new Set<string>();
    for (const { prefix, message, hint } of this._errors.values()) {
      const sig = `${message}\n${hint ?? ''}`;
      if (seen.has(sig)) {
        continue;
      }
      seen.add(sig);
      const item = el('div', 'jp-vqpu-error-item');
      item.appendChild(el('div', 'jp-vqpu-error-message', prefix + message));
      if (hint) {
        item.appendChild(el('div', 'jp-vqpu-error-hint', hint));
      }
      box.appendChild(item);
    }
    box.hidden = seen.size === 0;
  }

  // ---- devices ------------------------------------------------------------

  private _setDevices(devices: IDevice[]): void {
    this._devices = devices.filter(d => d && d.name);
    this._devicesFetchedAt = Date.now();
    // Estimate the server clock from the snapshot fields (ages stay right
    // even if the browser's clock is off).
    for (const d of this._devices) {
      if (
        typeof d.snapshot_at === 'number' &&
        typeof d.snapshot_age_s === 'number'
      ) {
        this._serverOffsetS =
          d.snapshot_at + d.snapshot_age_s - this._devicesFetchedAt / 1000;
        break;
      }
    }
    this._devicesLoaded = true;
    this._renderDevices();
  }

  private _renderDevices(): void {
    const list = this._deviceList;
    const seen = new Set<string>();
    let previous: HTMLElement | null = null;
    for (const d of [...this._devices].sort((a, b) =>
      a.name.localeCompare(b.name)
    )) {
      seen.add(d.name);
      const sig = JSON.stringify([
        d.name,
        d.status,
        d.num_qubits,
        d.queue_depth,
        d.held,
        d.snapshot_id,
        d.snapshot_version,
        d.offline_since,
        (d.agents ?? []).length
      ]);
      let row = this._deviceRows.get(d.name);
      if (!row || row.dataset.sig !== sig) {
        const fresh = this._deviceRow(d);
        fresh.dataset.sig = sig;
        if (row) {
          row.replaceWith(fresh);
        }
        row = fresh;
        this._deviceRows.set(d.name, row);
      }
      this._deviceSnapshotBase.set(d.name, d.snapshot_age_s ?? null);
      // keep sorted order
      const expectedNext: ChildNode | null = previous
        ? previous.nextSibling
        : list.firstChild;
      if (expectedNext !== row) {
        list.insertBefore(row, expectedNext);
      }
      previous = row;
    }
    for (const [name, row] of [...this._deviceRows]) {
      if (!seen.has(name)) {
        row.remove();
        this._deviceRows.delete(name);
        this._deviceSnapshotBase.delete(name);
      }
    }
    this._deviceEmpty.hidden = !this._devicesLoaded || this._devices.length > 0;
    this._tick();
  }

  private _deviceRow(d: IDevice): HTMLElement {
    const status = (d.status || 'offline').toLowerCase();
    const row = el('li', 'jp-vqpu-device');
    row.dataset.device = d.name;
    row.dataset.status = status;

    const head = el('div', 'jp-vqpu-row-head');
    head.appendChild(el('span', 'jp-vqpu-device-name', d.name));
    const st = el('span', 'jp-vqpu-device-status');
    st.dataset.status = status;
    const dot = el('span', 'jp-vqpu-dot');
    dot.setAttribute('aria-hidden', 'true');
    st.appendChild(dot);
    st.appendChild(el('span', 'jp-vqpu-device-status-text', status));
    if (status === 'offline' && typeof d.offline_since === 'number') {
      st.title = `offline since ${new Date(d.offline_since * 1000).toLocaleString()}`;
    }
    head.appendChild(st);
    const queue = el('span', 'jp-vqpu-queue');
    const depth = d.queue_depth ?? 0;
    queue.textContent = `queue ${depth}`;
    queue.dataset.queueDepth = String(depth);
    queue.title = `${depth} task(s) queued` + (d.held ? `, ${d.held} held` : '');
    head.appendChild(queue);
    row.appendChild(head);

    const meta = el('div', 'jp-vqpu-row-meta');
    if (d.num_qubits) {
      meta.appendChild(el('span', 'jp-vqpu-qubits', `${d.num_qubits} qubits`));
    }
    const agents = d.agents ?? [];
    meta.appendChild(
      el(
        'span',
        'jp-vqpu-agents',
        `${agents.length} agent${agents.length === 1 ? '' : 's'}`
      )
    );
    const snap = el('span', 'jp-vqpu-snapshot');
    const snapId = el('code', 'jp-vqpu-snapshot-id', shortId(d.snapshot_id));
    snapId.title = d.snapshot_id
      ? `snapshot ${d.snapshot_id}` +
        (d.snapshot_version !== null && d.snapshot_version !== undefined
          ? ` (version ${d.snapshot_version})`
          : '')
      : 'no calibration snapshot yet';
    snap.appendChild(el('span', 'jp-vqpu-label', 'snapshot '));
    snap.appendChild(snapId);
    const age = el('span', 'jp-vqpu-snapshot-age jp-vqpu-age');
    snap.appendChild(age);
    meta.appendChild(snap);
    row.appendChild(meta);
    return row;
  }

  // ---- tasks --------------------------------------------------------------

  private _renderTasks(force = false): void {
    const list = this._taskList;
    const tasks = [...this._tasks.values()]
      .sort(
        (a, b) =>
          (b.created_at ?? 0) - (a.created_at ?? 0) ||
          b.task_id.localeCompare(a.task_id)
      )
      .slice(0, MAX_TASKS);
    const seen = new Set<string>();
    let previous: HTMLElement | null = null;
    for (const t of tasks) {
      seen.add(t.task_id);
      const sig = JSON.stringify([
        t.state,
        t.device,
        t.shots,
        t.queue_position,
        t.agent,
        t.job_id,
        t.job_reason,
        t.reason,
        t.error,
        t.snapshot_id,
        t.name,
        t.created_at,
        t.attempts
      ]);
      let row = this._taskRows.get(t.task_id);
      if (!row || force || row.dataset.sig !== sig) {
        const fresh = this._taskRow(t);
        fresh.dataset.sig = sig;
        if (row) {
          row.replaceWith(fresh);
        }
        row = fresh;
        this._taskRows.set(t.task_id, row);
      }
      const expectedNext: ChildNode | null = previous
        ? previous.nextSibling
        : list.firstChild;
      if (expectedNext !== row) {
        list.insertBefore(row, expectedNext);
      }
      previous = row;
    }
    for (const [id, row] of [...this._taskRows]) {
      if (!seen.has(id)) {
        row.remove();
        this._taskRows.delete(id);
      }
    }
    this._taskEmpty.hidden = !this._tasksLoaded || tasks.length > 0;
    const active = tasks.filter(t => !FINAL_STATES.has(t.state)).length;
    this._taskCount.textContent = tasks.length
      ? `${active} active / ${tasks.length}`
      : '';
    this._tick();
  }

  private _stateDetail(t: ITaskView): string {
    switch (t.state) {
      case 'queued':
        return typeof t.queue_position === 'number'
          ? `position ${t.queue_position}`
          : '';
      case 'claimed': {
        const parts: string[] = [];
        if (t.agent) {
          parts.push(`by ${t.agent}`);
        }
        if (t.snapshot_id) {
          parts.push(`snapshot ${shortId(t.snapshot_id)}`);
        }
        return parts.join(', ');
      }
      case 'scheduled': {
        const reason = t.job_reason || t.reason;
        const job =
          t.job_id !== null && t.job_id !== undefined && t.job_id !== ''
            ? `job ${t.job_id}`
            : '';
        return [job, reason ? `(${reason})` : ''].filter(Boolean).join(' ');
      }
      case 'running':
        return [
          t.executor ? `on ${t.executor}` : '',
          t.job_id ? `job ${t.job_id}` : ''
        ]
          .filter(Boolean)
          .join(', ');
      case 'completed': {
        const counts = t.counts;
        if (counts && typeof counts === 'object') {
          const entries = Object.entries(counts).sort((a, b) => b[1] - a[1]);
          if (entries.length) {
            const [top, n] = entries[0];
            return `top ${top}: ${n}`;
          }
        }
        return '';
      }
      case 'failed':
        return firstLine(t.error || t.reason) || 'failed';
      case 'cancelled':
        return firstLine(t.reason);
      default:
        return firstLine(t.reason);
    }
  }

  private _taskRow(t: ITaskView): HTMLElement {
    const state = t.state || 'unknown';
    const row = el('li', 'jp-vqpu-task');
    row.dataset.taskId = t.task_id;
    row.dataset.state = state;

    const head = el('div', 'jp-vqpu-row-head');
    const id = el('code', 'jp-vqpu-task-id', displayTaskId(t.task_id));
    id.title = t.name ? `${t.task_id} (${t.name})` : t.task_id;
    head.appendChild(id);
    head.appendChild(el('span', 'jp-vqpu-task-device', t.device || ''));
    const badge = el('span', 'jp-vqpu-state', state);
    badge.dataset.state = state;
    head.appendChild(badge);
    if (!FINAL_STATES.has(state)) {
      const cancel = el('button', 'jp-vqpu-cancel jp-mod-styled', 'Cancel');
      cancel.type = 'button';
      cancel.title = `Cancel task ${t.task_id}`;
      cancel.addEventListener('click', ev => {
        ev.preventDefault();
        void this.cancel(t.task_id);
      });
      head.appendChild(cancel);
    }
    row.appendChild(head);

    const detail = this._stateDetail(t);
    if (detail) {
      const d = el(
        'div',
        state === 'failed'
          ? 'jp-vqpu-state-detail jp-vqpu-task-error'
          : 'jp-vqpu-state-detail',
        detail
      );
      if (state === 'failed' && t.error) {
        d.title = t.error;
      }
      row.appendChild(d);
    }

    const meta = el('div', 'jp-vqpu-row-meta');
    if (t.shots !== null && t.shots !== undefined) {
      meta.appendChild(el('span', 'jp-vqpu-shots', `${t.shots} shots`));
    }
    if (t.attempts && t.attempts > 1) {
      meta.appendChild(el('span', 'jp-vqpu-attempts', `attempt ${t.attempts}`));
    }
    const age = el('span', 'jp-vqpu-task-age jp-vqpu-age');
    if (typeof t.created_at === 'number') {
      age.dataset.since = String(t.created_at);
    }
    meta.appendChild(age);
    row.appendChild(meta);
    return row;
  }

  // ---- ages ---------------------------------------------------------------

  private _serverNowS(): number {
    return Date.now() / 1000 + this._serverOffsetS;
  }

  private _tick(): void {
    if (!this.isVisible && this._ticked) {
      return;
    }
    this._ticked = true;
    const elapsedS = this._devicesFetchedAt
      ? (Date.now() - this._devicesFetchedAt) / 1000
      : 0;
    for (const [name, row] of this._deviceRows) {
      const base = this._deviceSnapshotBase.get(name);
      const ageEl = row.querySelector<HTMLElement>('.jp-vqpu-snapshot-age');
      if (ageEl) {
        ageEl.textContent =
          base === null || base === undefined
            ? ''
            : ` · ${humanizeSeconds(base + elapsedS)} old`;
      }
    }
    const now = this._serverNowS();
    for (const row of this._taskRows.values()) {
      const ageEl = row.querySelector<HTMLElement>('.jp-vqpu-task-age');
      const since = ageEl?.dataset.since;
      if (ageEl && since) {
        const age = humanizeSeconds(now - Number(since));
        ageEl.textContent = age === 'just now' ? age : age + ' ago';
      }
    }
  }

  // ---- layout -------------------------------------------------------------

  private _buildSkeleton(): void {
    const header = el('div', 'jp-vqpu-header');
    header.appendChild(el('h2', 'jp-vqpu-title', 'vQPU'));
    this._status = el('span', 'jp-vqpu-connection', 'connecting…');
    this._status.dataset.mode = 'connecting';
    header.appendChild(this._status);
    const refresh = el('button', 'jp-vqpu-refresh jp-mod-styled', 'Refresh');
    refresh.type = 'button';
    refresh.title = 'Reload devices and tasks';
    refresh.addEventListener('click', () => void this.refreshAll());
    header.appendChild(refresh);
    this.node.appendChild(header);

    this._errorBox = el('div', 'jp-vqpu-error');
    this._errorBox.setAttribute('role', 'alert');
    this._errorBox.hidden = true;
    this.node.appendChild(this._errorBox);

    const devices = el('section', 'jp-vqpu-section jp-vqpu-devices');
    devices.appendChild(el('h3', 'jp-vqpu-section-title', 'Devices'));
    this._deviceList = el('ul', 'jp-vqpu-list jp-vqpu-device-list');
    devices.appendChild(this._deviceList);
    this._deviceEmpty = el('div', 'jp-vqpu-empty', 'No devices registered.');
    this._deviceEmpty.hidden = true;
    devices.appendChild(this._deviceEmpty);
    this.node.appendChild(devices);

    const tasks = el('section', 'jp-vqpu-section jp-vqpu-tasks');
    const th = el('h3', 'jp-vqpu-section-title', 'My tasks');
    this._taskCount = el('span', 'jp-vqpu-task-count');
    th.appendChild(this._taskCount);
    tasks.appendChild(th);
    this._taskList = el('ul', 'jp-vqpu-list jp-vqpu-task-list');
    tasks.appendChild(this._taskList);
    this._taskEmpty = el(
      'div',
      'jp-vqpu-empty',
      'No tasks yet. Run a cell with %%vqpu <device> to submit one.'
    );
    this._taskEmpty.hidden = true;
    tasks.appendChild(this._taskEmpty);
    this.node.appendChild(tasks);
  }

  private _settings: ServerConnection.ISettings;
  private _stream: EventStream | null = null;
  private _started = false;
  private _mode: ConnectionMode = 'connecting';
  private _everConnected = false;
  private _devices: IDevice[] = [];
  private _devicesLoaded = false;
  private _devicesFetchedAt = 0;
  private _serverOffsetS = 0;
  private _deviceRows = new Map<string, HTMLElement>();
  private _deviceSnapshotBase = new Map<string, number | null>();
  private _tasks = new Map<string, ITaskView>();
  private _tasksLoaded = false;
  private _taskRows = new Map<string, HTMLElement>();
  private _errors = new Map<
    string,
    { prefix: string; message: string; hint: string | null }
  >();
  private _taskRefreshTimers = new Map<string, number>();
  private _deviceRefreshTimer: number | null = null;
  private _deviceTimer: number | null = null;
  private _taskTimer: number | null = null;
  private _tickTimer: number | null = null;
  private _ticked = false;
  private _status!: HTMLElement;
  private _errorBox!: HTMLElement;
  private _deviceList!: HTMLElement;
  private _deviceEmpty!: HTMLElement;
  private _taskList!: HTMLElement;
  private _taskEmpty!: HTMLElement;
  private _taskCount!: HTMLElement;
}
