/**
 * What the vQPU panel knows: the devices, the user's tasks, the errors, the
 * server's clock, and how an event from the stream changes them.
 *
 * No DOM and no requests: the panel (panel.ts) fetches and feeds the answers
 * in, and hands each returned change to its views. That keeps every rule about
 * the data (which rows to re-render, in which order, which event calls for
 * which reload) testable on its own.
 */
import type { IDevice, IEventMessage, ITaskView } from './api';
import { VqpuApiError } from './apiError';
import { ErrorLog } from './errorLog';
import { type IKeyedChange, KeyedList } from './keyedList';
import { FINAL_STATES, TaskState, isFinalState } from './states';

/** Tasks on one page of the list (newest first). */
export const PAGE_SIZE = 20;

/** What the task list is narrowed to ('' for any). */
export interface ITaskFilter {
  readonly state: string;
  readonly device: string;
  /** Matched, case-insensitively, against the id, the name and the tags. */
  readonly query: string;
}

export const NO_FILTER: ITaskFilter = { state: '', device: '', query: '' };

/** Whether task `t` passes `f`. */
export function matchesTask(t: ITaskView, f: ITaskFilter): boolean {
  if (f.state && t.state !== f.state) {
    return false;
  }
  if (f.device && t.device !== f.device) {
    return false;
  }
  const q = f.query.trim().toLowerCase();
  if (!q) {
    return true;
  }
  const words = [t.task_id, t.name ?? '', ...(Array.isArray(t.tags) ? t.tags : [])];
  return words.some(w => String(w).toLowerCase().includes(q));
}

/** Where the list is: the page shown (from 0), how many pages, tasks matching, tasks held. */
export interface IPageInfo {
  readonly page: number;
  readonly pages: number;
  readonly matching: number;
  readonly total: number;
  /** 1-based positions of the first and last task shown (0, 0 for none). */
  readonly first: number;
  readonly last: number;
}

/**
 * The control plane as the service last found it (the panel's live dot):
 * `connected`, `unreachable`, `not_running` or `unknown`, with what to do.
 */
export interface IControlPlane {
  readonly state: string;
  readonly message?: string;
  readonly hint?: string;
}

/** The error code the API answers with while it cannot reach the control plane. */
export const UNREACHABLE_CODE = 'control_plane_unavailable';

/**
 * Events that change a device's row (queue depth, agents, snapshot) rather
 * than only a task's.
 */
export const DEVICE_EVENTS: ReadonlySet<string> = new Set<string>([
  'snapshot',
  'agent_online',
  'agent_offline',
  'fenced',
  TaskState.QUEUED,
  TaskState.CLAIMED,
  ...FINAL_STATES
]);

/** What an event asks of the panel. */
export interface IEventEffect {
  /** The device list was replaced (a `devices` message): apply this change. */
  readonly devices: IKeyedChange | null;
  /** Re-read this task. */
  readonly refreshTask: string | null;
  /** Re-read the device list. */
  readonly refreshDevices: boolean;
}

const NO_EFFECT: IEventEffect = {
  devices: null,
  refreshTask: null,
  refreshDevices: false
};

/** What a device row shows (its snapshot age ticks in place). */
export function deviceSignature(d: IDevice): string {
  return JSON.stringify([
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
}

/** What a task row shows (its age ticks in place). */
export function taskSignature(t: ITaskView): string {
  return JSON.stringify([
    t.state,
    t.device,
    t.shots,
    t.queue_position,
    t.agent,
    t.executor,
    t.job_id,
    t.job_reason,
    t.reason,
    t.error,
    t.snapshot_id,
    t.name,
    t.created_at,
    t.attempts,
    t.counts,
    t.tags
  ]);
}

/** Newest task first; ids break ties (they sort by submission time). */
export function newestFirst(a: ITaskView, b: ITaskView): number {
  return (
    (b.created_at ?? 0) - (a.created_at ?? 0) ||
    b.task_id.localeCompare(a.task_id)
  );
}

function isDevice(d: unknown): d is IDevice {
  return !!d && typeof d === 'object' && !!(d as IDevice).name;
}

function isTask(t: unknown): t is ITaskView {
  return !!t && typeof t === 'object' && !!(t as ITaskView).task_id;
}

export class VqpuPanelModel {
  /** Devices by name, sorted by name. */
  readonly devices = new KeyedList<IDevice>({
    key: d => d.name,
    signature: deviceSignature,
    compare: (a, b) => a.name.localeCompare(b.name)
  });

  /** The user's tasks by id, newest first, one page of PAGE_SIZE shown. */
  readonly tasks = new KeyedList<ITaskView>({
    key: t => t.task_id,
    signature: taskSignature,
    compare: newestFirst,
    limit: PAGE_SIZE
  });

  /** The filter the task list shows. */
  get filter(): ITaskFilter {
    return this._filter;
  }

  /** Narrow the list (the fields given replace the current ones); back to the first page. */
  setFilter(filter: Partial<ITaskFilter>): IKeyedChange {
    this._filter = { ...this._filter, ...filter };
    const f = this._filter;
    this._page = 0;
    return this.tasks.setWindow({ filter: t => matchesTask(t, f), offset: 0 });
  }

  /** Show page `page` (from 0; clamped to the pages there are). */
  setPage(page: number): IKeyedChange {
    const pages = Math.max(1, Math.ceil(this.tasks.matching / PAGE_SIZE));
    this._page = Math.min(Math.max(0, Math.floor(page) || 0), pages - 1);
    return this.tasks.setWindow({ offset: this._page * PAGE_SIZE });
  }

  /** Where the task list is (for the pager). */
  pageInfo(): IPageInfo {
    const matching = this.tasks.matching;
    const pages = Math.max(1, Math.ceil(matching / PAGE_SIZE));
    const shown = this.tasks.shown().length;
    const first = shown ? this._page * PAGE_SIZE + 1 : 0;
    return {
      page: this._page,
      pages,
      matching,
      total: this.tasks.size,
      first,
      last: shown ? first + shown - 1 : 0
    };
  }

  /** The devices the held tasks ran on, sorted (the device filter's choices). */
  taskDevices(): string[] {
    const names = new Set<string>(this.devices.shown().map(d => d.name));
    return [...names].sort();
  }

  /** The control plane as last seen (null before anything said). */
  get controlPlane(): IControlPlane | null {
    return this._controlPlane;
  }

  /**
   * Note what a message or an answer says about the control plane: a
   * `control_plane` object (the events socket sends one with every device
   * list), or an API error (`control_plane_unavailable`: unreachable). Whether
   * the state changed.
   */
  noteControlPlane(cp: unknown): boolean {
    let next: IControlPlane | null = null;
    if (cp && typeof cp === 'object' && typeof (cp as IControlPlane).state === 'string') {
      const c = cp as IControlPlane;
      next = { state: c.state, message: c.message ?? '', hint: c.hint ?? '' };
    }
    if (!next) {
      return false;
    }
    const before = this._controlPlane;
    this._controlPlane = next;
    return !before || before.state !== next.state || before.message !== next.message;
  }

  /** An API call's failure: unreachable when the service said so (whether that changed anything). */
  noteFailure(err: unknown): boolean {
    const e = VqpuApiError.from(err);
    if (e.code === UNREACHABLE_CODE) {
      return this.noteControlPlane({ state: 'unreachable', message: e.message, hint: e.hint ?? '' });
    }
    return false;
  }

  /** Errors by source. */
  readonly errors = new ErrorLog();

  /**
   * A fresh device list (from the API or a `devices` event) fetched at
   * `nowMs`; anything that is not a named device is ignored.
   */
  setDevices(devices: unknown, nowMs: number = Date.now()): IKeyedChange {
    const list = (Array.isArray(devices) ? devices : []).filter(isDevice);
    this._devicesFetchedAtMs = nowMs;
    // Estimate the server clock from the snapshot fields, so that ages stay
    // right even if the browser's clock is off.
    for (const d of list) {
      if (
        typeof d.snapshot_at === 'number' &&
        typeof d.snapshot_age_s === 'number'
      ) {
        this._serverOffsetS = d.snapshot_at + d.snapshot_age_s - nowMs / 1000;
        break;
      }
    }
    return this.devices.replaceAll(list);
  }

  /** A fresh task list; anything without a task id is ignored. */
  setTasks(tasks: unknown): IKeyedChange {
    return this.tasks.replaceAll(
      (Array.isArray(tasks) ? tasks : []).filter(isTask)
    );
  }

  /** A fresh view of one task; null if `view` is not a task. */
  setTask(view: unknown): IKeyedChange | null {
    return isTask(view) ? this.tasks.upsert(view) : null;
  }

  /** Stop showing a task (purged, or not the user's); null if it was not held. */
  dropTask(id: string): IKeyedChange | null {
    return this.tasks.has(id) ? this.tasks.remove(id) : null;
  }

  /**
   * Apply a message from the event stream: a `devices` message replaces the
   * device list; a task's event asks for that task to be re-read (the event
   * says that it changed, the API says what it is now) and, for events that
   * move queues, agents or snapshots, for the devices too.
   */
  applyEvent(msg: IEventMessage | unknown, nowMs: number = Date.now()): IEventEffect {
    if (!msg || typeof msg !== 'object') {
      return NO_EFFECT;
    }
    const m = msg as IEventMessage;
    if (m.control_plane) {
      this.noteControlPlane(m.control_plane);
    }
    if (m.type === 'error') {
      return NO_EFFECT;
    }
    if (m.type === 'devices' && Array.isArray(m.devices)) {
      return { ...NO_EFFECT, devices: this.setDevices(m.devices, nowMs) };
    }
    const task = typeof m.task === 'string' && m.task ? m.task : null;
    return {
      devices: null,
      refreshTask: task,
      refreshDevices:
        task === null || (!!m.event && DEVICE_EVENTS.has(m.event))
    };
  }

  /** A device's snapshot age now, in seconds; null without a snapshot. */
  snapshotAgeS(name: string, nowMs: number = Date.now()): number | null {
    const base = this.devices.get(name)?.snapshot_age_s;
    if (base === null || base === undefined) {
      return null;
    }
    return base + (nowMs - this._devicesFetchedAtMs) / 1000;
  }

  /** The server's clock (epoch seconds), as estimated from the devices. */
  serverNowS(nowMs: number = Date.now()): number {
    return nowMs / 1000 + this._serverOffsetS;
  }

  /** Tasks held (on every page), and how many of them are not final yet. */
  taskSummary(): { active: number; shown: number } {
    const all = this.tasks.values();
    return {
      active: all.filter(t => !isFinalState(t.state)).length,
      shown: all.length
    };
  }

  private _filter: ITaskFilter = NO_FILTER;
  private _page = 0;
  private _controlPlane: IControlPlane | null = null;
  /** When the device list was fetched (browser clock, ms; set with it). */
  private _devicesFetchedAtMs = 0;
  private _serverOffsetS = 0;
}
