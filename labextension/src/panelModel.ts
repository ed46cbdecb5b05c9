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
import { ErrorLog } from './errorLog';
import { type IKeyedChange, KeyedList } from './keyedList';
import { FINAL_STATES, TaskState, isFinalState } from './states';

/** Show at most this many tasks (newest first). */
export const MAX_TASKS = 100;

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
    t.counts
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

  /** The user's tasks by id, newest first, at most MAX_TASKS shown. */
  readonly tasks = new KeyedList<ITaskView>({
    key: t => t.task_id,
    signature: taskSignature,
    compare: newestFirst,
    limit: MAX_TASKS
  });

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

  /** Tasks shown, and how many of them are not final yet. */
  taskSummary(): { active: number; shown: number } {
    const shown = this.tasks.shown();
    return {
      active: shown.filter(t => !isFinalState(t.state)).length,
      shown: shown.length
    };
  }

  /** When the device list was fetched (browser clock, ms; set with it). */
  private _devicesFetchedAtMs = 0;
  private _serverOffsetS = 0;
}
