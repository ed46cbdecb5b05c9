import { describe, expect, it } from 'vitest';

import type { IDevice, ITaskView } from '../src/api';
import { VqpuApiError } from '../src/apiError';
import { DEVICE_EVENTS, MAX_TASKS, VqpuPanelModel } from '../src/panelModel';
import { FINAL_STATES, TASK_STATES, TaskState } from '../src/states';

const task = (id: string, createdAt: number, state: string = TaskState.QUEUED): ITaskView => ({
  task_id: id,
  device: 'fez',
  state,
  created_at: createdAt
});

const device = (name: string, extra: Partial<IDevice> = {}): IDevice => ({
  name,
  status: 'online',
  ...extra
});

describe('VqpuPanelModel devices', () => {
  it('keeps named devices only, sorted by name', () => {
    const m = new VqpuPanelModel();
    const c = m.setDevices([device('ideal'), null, { status: 'online' }, device('fez')], 0);
    expect(c.order).toEqual(['fez', 'ideal']);
    expect(m.devices.loaded).toBe(true);
    expect(m.setDevices('not a list', 0).order).toEqual([]);
  });

  it('re-renders a device when what its row shows changes, not when its snapshot only ages', () => {
    const m = new VqpuPanelModel();
    m.setDevices([device('fez', { queue_depth: 1, snapshot_age_s: 5 })], 0);
    expect(m.setDevices([device('fez', { queue_depth: 1, snapshot_age_s: 15 })], 10_000).updated).toEqual([]);
    expect(m.setDevices([device('fez', { queue_depth: 2, snapshot_age_s: 15 })], 10_000).updated).toEqual(['fez']);
    expect(m.setDevices([device('fez', { queue_depth: 2, agents: [{}] })], 10_000).updated).toEqual(['fez']);
  });

  it('ages a snapshot from when the list was fetched, and estimates the server clock from it', () => {
    const m = new VqpuPanelModel();
    // The server says: snapshot taken at t=1000 s, 30 s old, so its clock reads 1030 s
    // when the browser's reads 500 s.
    m.setDevices([device('fez', { snapshot_at: 1000, snapshot_age_s: 30 }), device('bare')], 500_000);
    expect(m.snapshotAgeS('fez', 500_000)).toBe(30);
    expect(m.snapshotAgeS('fez', 512_000)).toBe(42);
    expect(m.snapshotAgeS('bare', 512_000)).toBeNull();
    expect(m.snapshotAgeS('unknown', 512_000)).toBeNull();
    expect(m.serverNowS(512_000)).toBeCloseTo(1042, 6);
  });
});

describe('VqpuPanelModel tasks', () => {
  it('shows the newest first and at most MAX_TASKS', () => {
    const m = new VqpuPanelModel();
    const tasks = Array.from({ length: MAX_TASKS + 5 }, (_, i) => task(`fez.${String(i).padStart(4, '0')}`, i));
    const c = m.setTasks([...tasks, { nope: 1 }]);
    expect(c.order.length).toBe(MAX_TASKS);
    expect(c.order[0]).toBe(`fez.${String(MAX_TASKS + 4).padStart(4, '0')}`);
    expect(m.tasks.size).toBe(MAX_TASKS + 5);
  });

  it('updates one task in place, counts the active ones, and drops one', () => {
    const m = new VqpuPanelModel();
    m.setTasks([task('fez.a', 1), task('fez.b', 2)]);
    expect(m.taskSummary()).toEqual({ active: 2, shown: 2 });
    const c = m.setTask({ ...task('fez.a', 1), state: TaskState.COMPLETED, counts: { '00': 7 } });
    expect(c?.updated).toEqual(['fez.a']);
    expect(c?.order).toEqual(['fez.b', 'fez.a']);
    expect(m.taskSummary()).toEqual({ active: 1, shown: 2 });
    expect(m.setTask(null)).toBeNull();
    expect(m.setTask({ state: TaskState.QUEUED })).toBeNull();
    expect(m.dropTask('fez.b')?.removed).toEqual(['fez.b']);
    expect(m.dropTask('fez.b')).toBeNull();
  });

  it('re-renders a running task whose executor appears, and a completed one whose counts arrive', () => {
    const m = new VqpuPanelModel();
    m.setTasks([task('fez.a', 1, TaskState.RUNNING)]);
    expect(m.setTask({ ...task('fez.a', 1, TaskState.RUNNING), executor: 'slurm' })?.updated).toEqual(['fez.a']);
    m.setTask(task('fez.a', 1, TaskState.COMPLETED));
    expect(m.setTask({ ...task('fez.a', 1, TaskState.COMPLETED), counts: { '11': 3 } })?.updated).toEqual(['fez.a']);
  });
});

describe('VqpuPanelModel.applyEvent', () => {
  it('replaces the device list from a devices message', () => {
    const m = new VqpuPanelModel();
    const effect = m.applyEvent({ type: 'devices', devices: [device('fez')] }, 0);
    expect(effect.devices?.inserted).toEqual(['fez']);
    expect(effect.refreshTask).toBeNull();
    expect(effect.refreshDevices).toBe(false);
    expect(m.devices.get('fez')?.status).toBe('online');
  });

  it('re-reads the task of a task event, and the devices when the event moves a queue', () => {
    const m = new VqpuPanelModel();
    expect(m.applyEvent({ type: 'event', event: TaskState.RUNNING, task: 'fez.a' })).toEqual({
      devices: null,
      refreshTask: 'fez.a',
      refreshDevices: false
    });
    for (const event of [TaskState.QUEUED, TaskState.CLAIMED, ...FINAL_STATES]) {
      const effect = m.applyEvent({ type: 'event', event, task: 'fez.a' });
      expect(effect.refreshTask).toBe('fez.a');
      expect(effect.refreshDevices, event).toBe(true);
    }
  });

  it('re-reads the devices for a device event without a task', () => {
    const m = new VqpuPanelModel();
    for (const event of ['agent_online', 'agent_offline', 'snapshot', 'fenced', 'whatever']) {
      expect(m.applyEvent({ type: 'event', event, device: 'fez' })).toEqual({
        devices: null,
        refreshTask: null,
        refreshDevices: true
      });
    }
  });

  it('ignores what is not a message', () => {
    const m = new VqpuPanelModel();
    for (const msg of [null, undefined, 'x', 42]) {
      expect(m.applyEvent(msg)).toEqual({ devices: null, refreshTask: null, refreshDevices: false });
    }
    // A devices message without a list is not a device list.
    expect(m.applyEvent({ type: 'devices' }).devices).toBeNull();
  });

  it('names device events with the state vocabulary', () => {
    for (const s of TASK_STATES) {
      expect(DEVICE_EVENTS.has(s), s).toBe(
        s === TaskState.QUEUED || s === TaskState.CLAIMED || FINAL_STATES.has(s)
      );
    }
  });
});

describe('ErrorLog', () => {
  it('shows each distinct error once, with its prefix and hint, until its source clears it', () => {
    const m = new VqpuPanelModel();
    const down = new VqpuApiError('Cannot reach the Jupyter server: x', null, 'network', 'Check the server.');
    m.errors.set('devices', down);
    m.errors.set('tasks', down);
    m.errors.set('cancel:fez.a', new Error('boom'), 'Cancel …a: ');
    expect(m.errors.shown()).toEqual([
      { text: 'Cannot reach the Jupyter server: x', hint: 'Check the server.' },
      { text: 'Cancel …a: boom', hint: null }
    ]);
    expect(m.errors.clear('devices')).toBe(true);
    expect(m.errors.shown().length).toBe(2); // 'tasks' still says the server is down
    expect(m.errors.clear('devices')).toBe(false);
    m.errors.clear('tasks');
    m.errors.clear('cancel:fez.a');
    expect(m.errors.shown()).toEqual([]);
  });
});
