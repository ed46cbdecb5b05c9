/**
 * The "vQPU" left-sidebar panel: devices and the user's tasks, live; a job
 * manager for them (filter, search, pages, a detail view per task).
 *
 * The controller: it fetches from the API, listens to the event stream, keeps
 * the timers, feeds what it learns into the model (panelModel.ts) and hands
 * each change to the views (headerView, errorView, deviceView, taskView).
 * DOM hooks the browser tests use: `#jp-vqpu-panel` plus those the views name.
 */
import { ServerConnection } from '@jupyterlab/services';
import { type Message } from '@lumino/messaging';
import { Widget } from '@lumino/widgets';

import {
  type ITaskCircuit,
  cancelTask,
  getTask,
  getTaskCircuit,
  listDevices,
  listTasks
} from './api';
import { VqpuApiError } from './apiError';
import { liveStatus } from './connection';
import { DeviceListView } from './deviceView';
import { ErrorView } from './errorView';
import { type ConnectionMode, EventStream } from './events';
import { displayTaskId } from './format';
import { HeaderView } from './headerView';
import type { IKeyedChange } from './keyedList';
import { type ITaskFilter, VqpuPanelModel } from './panelModel';
import { TaskState } from './states';
import { TaskDetailView } from './taskDetailView';
import { TaskFilterView } from './taskFilterView';
import { TaskListView } from './taskView';

/** Device list refresh period (keeps queue depth / snapshot age honest). */
const DEVICE_REFRESH_MS = 10_000;
/** Full task list refresh period (safety net behind the live events). */
const TASK_REFRESH_MS = 30_000;
/** Ages tick this often. */
const TICK_MS = 1_000;
/** Events for one task arriving within this window cause one re-read. */
const TASK_REFRESH_DEBOUNCE_MS = 50;
/** Device events arriving within this window cause one re-read. */
const DEVICE_REFRESH_DEBOUNCE_MS = 250;

type Settled<T> =
  | { status: 'fulfilled'; value: T }
  | { status: 'rejected'; reason: unknown };

/** `p`'s outcome, never a rejection (Promise.allSettled, which ES2019 lacks). */
function settle<T>(p: Promise<T>): Promise<Settled<T>> {
  return p.then(
    value => ({ status: 'fulfilled' as const, value }),
    reason => ({ status: 'rejected' as const, reason })
  );
}

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
    this._header = new HeaderView(() => void this.refreshAll());
    this._errorView = new ErrorView();
    this._deviceView = new DeviceListView(this._model.devices);
    this._taskView = new TaskListView(
      this._model.tasks,
      id => void this.cancel(id),
      id => void this.openTask(id)
    );
    this._filterView = new TaskFilterView({
      onFilter: f => this.setFilter(f),
      onPage: delta => this.setPage(this._model.pageInfo().page + delta)
    });
    this._taskView.toolbar.appendChild(this._filterView.node);
    this._detailView = new TaskDetailView({
      onBack: () => this.closeTask(),
      onCancel: id => void this.cancel(id)
    });
    for (const view of [
      this._header,
      this._errorView,
      this._detailView,
      this._deviceView,
      this._taskView
    ]) {
      this.node.appendChild(view.node);
    }
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
      this._showDevices(this._model.setDevices(await listDevices(this._settings)));
      // The device list comes from the control plane: it answered.
      this._noteControlPlane({ state: 'connected' });
      this._clearError('devices');
    } catch (err) {
      this._setError('devices', err);
    }
  }

  async refreshTasks(): Promise<void> {
    try {
      this._showTasks(this._model.setTasks(await listTasks(this._settings)));
      this._clearError('tasks');
    } catch (err) {
      this._setError('tasks', err);
    }
  }

  /** Narrow the task list (back to its first page). */
  setFilter(filter: Partial<ITaskFilter>): void {
    this._showTasks(this._model.setFilter(filter));
  }

  /** Show page `page` of the task list (from 0). */
  setPage(page: number): void {
    this._showTasks(this._model.setPage(page));
  }

  /** Open task `id` in the detail view (its full view, history and circuit). */
  async openTask(id: string): Promise<void> {
    const known = this._model.tasks.get(id);
    this._circuit = null;
    if (known) {
      this._detailView.show(known, null);
    }
    this._setDetailShown(true);
    const [view, circuit] = await Promise.all([
      settle(getTask(id, this._settings)),
      settle(getTaskCircuit(id, this._settings))
    ]);
    if (this._detailView.taskId !== id && known) {
      return; // closed (or another opened) meanwhile
    }
    if (circuit.status === 'fulfilled') {
      this._circuit = circuit.value;
      this._clearError(`circuit:${id}`);
    } else {
      this._setError(`circuit:${id}`, circuit.reason, 'Circuit: ');
    }
    if (view.status === 'fulfilled') {
      this._showTasks(this._model.setTask(view.value));
      this._detailView.show(view.value, this._circuit);
      this._clearError(`task:${id}`);
    } else {
      this._setError(`task:${id}`, view.reason);
      if (!known) {
        this.closeTask();
      }
    }
  }

  /** Back from the detail view to the lists. */
  closeTask(): void {
    const id = this._detailView.taskId;
    this._detailView.hide();
    this._circuit = null;
    this._setDetailShown(false);
    if (id) {
      this._taskView.focusRow(id);
    }
  }

  async refreshTask(id: string): Promise<void> {
    try {
      const view = await getTask(id, this._settings);
      this._showTasks(this._model.setTask(view));
      this._clearError(`task:${id}`);
      if (this._detailView.taskId === id) {
        if (view.state === TaskState.COMPLETED && !this._circuit?.transpiled_qasm) {
          this._circuit = await getTaskCircuit(id, this._settings).catch(() => this._circuit);
        }
        this._detailView.show(view, this._circuit);
      }
    } catch (err) {
      // Someone else's task (or a purged one): not ours to show.
      if (
        err instanceof VqpuApiError &&
        (err.status === 403 || err.status === 404)
      ) {
        this._showTasks(this._model.dropTask(id));
        return;
      }
      this._setError(`task:${id}`, err);
    }
  }

  async cancel(id: string): Promise<void> {
    this._taskView.showCancelling(id);
    try {
      this._showTasks(this._model.setTask(await cancelTask(id, this._settings)));
      this._clearError(`cancel:${id}`);
    } catch (err) {
      this._setError(`cancel:${id}`, err, `Cancel ${displayTaskId(id)}: `);
    }
    // Whatever the answer, the row loses its "Cancelling…" state.
    this._showTasks(this._model.tasks.invalidate(id));
  }

  protected onAfterAttach(msg: Message): void {
    super.onAfterAttach(msg);
    this.start();
  }

  protected onAfterShow(msg: Message): void {
    super.onAfterShow(msg);
    this._tick();
  }

  // ---- model -> views -----------------------------------------------------

  private _showDevices(change: IKeyedChange | null): void {
    if (change) {
      this._deviceView.update(change);
      this._filterView.setDevices(this._model.taskDevices());
      this._tick();
    }
  }

  private _showTasks(change: IKeyedChange | null): void {
    if (change) {
      this._taskView.update(change, this._model.taskSummary());
      this._filterView.setPage(this._model.pageInfo());
      this._tick();
    }
  }

  private _setDetailShown(shown: boolean): void {
    this._deviceView.node.hidden = shown;
    this._taskView.node.hidden = shown;
    this.node.classList.toggle('jp-vqpu-mod-detail', shown);
  }

  private _setError(key: string, err: unknown, prefix = ''): void {
    if (this._model.noteFailure(err)) {
      this._showLive();
    }
    this._model.errors.set(key, err, prefix);
    this._errorView.render(this._model.errors.shown());
  }

  private _noteControlPlane(cp: unknown): void {
    if (this._model.noteControlPlane(cp)) {
      this._showLive();
    }
  }

  /** The live dot: the event stream's mode and the control plane's state together. */
  private _showLive(): void {
    this._header.setStatus(liveStatus(this._mode, this._model.controlPlane));
  }

  private _clearError(key: string): void {
    if (this._model.errors.clear(key)) {
      this._errorView.render(this._model.errors.shown());
    }
  }

  /** Ages tick while the panel is visible (and once before it ever is). */
  private _tick(): void {
    if (!this.isVisible && this._ticked) {
      return;
    }
    this._ticked = true;
    const now = Date.now();
    this._deviceView.tick(name => this._model.snapshotAgeS(name, now));
    this._taskView.tick(this._model.serverNowS(now));
  }

  // ---- events -------------------------------------------------------------

  private _onEvent(msg: unknown): void {
    const before = this._model.controlPlane;
    const effect = this._model.applyEvent(msg);
    if (this._model.controlPlane !== before) {
      this._showLive();
    }
    this._showDevices(effect.devices);
    if (effect.refreshTask) {
      this._scheduleTaskRefresh(effect.refreshTask);
    }
    if (effect.refreshDevices) {
      this._scheduleDeviceRefresh();
    }
  }

  private _onMode(mode: ConnectionMode, err: VqpuApiError | null): void {
    const previous = this._mode;
    this._mode = mode;
    this._showLive();
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
      }, TASK_REFRESH_DEBOUNCE_MS)
    );
  }

  private _scheduleDeviceRefresh(): void {
    if (this._deviceRefreshTimer !== null) {
      return;
    }
    this._deviceRefreshTimer = window.setTimeout(() => {
      this._deviceRefreshTimer = null;
      void this.refreshDevices();
    }, DEVICE_REFRESH_DEBOUNCE_MS);
  }

  private _settings: ServerConnection.ISettings;
  private _model = new VqpuPanelModel();
  private _header: HeaderView;
  private _errorView: ErrorView;
  private _deviceView: DeviceListView;
  private _taskView: TaskListView;
  private _filterView: TaskFilterView;
  private _detailView: TaskDetailView;
  private _circuit: ITaskCircuit | null = null;
  private _stream: EventStream | null = null;
  private _started = false;
  private _mode: ConnectionMode = 'connecting';
  private _everConnected = false;
  private _taskRefreshTimers = new Map<string, number>();
  private _deviceRefreshTimer: number | null = null;
  private _deviceTimer: number | null = null;
  private _taskTimer: number | null = null;
  private _tickTimer: number | null = null;
  private _ticked = false;
}
