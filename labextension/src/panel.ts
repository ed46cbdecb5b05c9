/**
 * The "vQPU" left-sidebar panel: devices and the user's tasks, live.
 *
 * The controller: it fetches from the API, listens to the event stream, keeps
 * the timers, feeds what it learns into the model (panelModel.ts) and hands
 * each change to the views (headerView, errorView, deviceView, taskView).
 * DOM hooks the browser tests use: `#jp-vqpu-panel` plus those the views name.
 */
import { ServerConnection } from '@jupyterlab/services';
import { type Message } from '@lumino/messaging';
import { Widget } from '@lumino/widgets';

import { cancelTask, getTask, listDevices, listTasks } from './api';
import { VqpuApiError } from './apiError';
import { DeviceListView } from './deviceView';
import { ErrorView } from './errorView';
import { type ConnectionMode, EventStream } from './events';
import { displayTaskId } from './format';
import { HeaderView } from './headerView';
import type { IKeyedChange } from './keyedList';
import { VqpuPanelModel } from './panelModel';
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
      id => void this.cancel(id)
    );
    for (const view of [
      this._header,
      this._errorView,
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

  async refreshTask(id: string): Promise<void> {
    try {
      this._showTasks(this._model.setTask(await getTask(id, this._settings)));
      this._clearError(`task:${id}`);
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
      this._tick();
    }
  }

  private _showTasks(change: IKeyedChange | null): void {
    if (change) {
      this._taskView.update(change, this._model.taskSummary());
      this._tick();
    }
  }

  private _setError(key: string, err: unknown, prefix = ''): void {
    this._model.errors.set(key, err, prefix);
    this._errorView.render(this._model.errors.shown());
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
    const effect = this._model.applyEvent(msg);
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
    this._header.setMode(mode);
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
