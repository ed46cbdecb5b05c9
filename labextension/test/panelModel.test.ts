import { describe, expect, it } from 'vitest';

import type { IDevice, ITaskView } from '../src/api';
import { VqpuApiError } from '../src/apiError';
import { DEVICE_EVENTS, NO_FILTER, PAGE_SIZE, VqpuPanelModel, matchesTask } from '../src/panelModel';
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
  it('shows the newest first, one page of PAGE_SIZE at a time', () => {
    const m = new VqpuPanelModel();
    const tasks = Array.from({ length: PAGE_SIZE * 2 + 5 }, (_, i) => task(`fez.${String(i).padStart(4, '0')}`, i));
    const c = m.setTasks([...tasks, { nope: 1 }]);
    expect(c.order.length).toBe(PAGE_SIZE);
    expect(c.order[0]).toBe(`fez.${String(PAGE_SIZE * 2 + 4).padStart(4, '0')}`);
    expect(m.tasks.size).toBe(PAGE_SIZE * 2 + 5);
    expect(m.pageInfo()).toEqual({ page: 0, pages: 3, matching: 45, total: 45, first: 1, last: 20 });
    const last = m.setPage(2);
    expect(last.order).toEqual(['fez.0004', 'fez.0003', 'fez.0002', 'fez.0001', 'fez.0000']);
    expect(last.removed.length).toBe(PAGE_SIZE);
    expect(m.pageInfo()).toMatchObject({ page: 2, first: 41, last: 45 });
    // past either end: clamped
    expect(m.setPage(9).order[0]).toBe('fez.0004');
    expect(m.setPage(-3).order[0]).toBe('fez.0044');
  });

  it('does not only grow: a new task pushes the oldest of the page onto the next', () => {
    const m = new VqpuPanelModel();
    m.setTasks(Array.from({ length: PAGE_SIZE }, (_, i) => task(`fez.${String(i).padStart(4, '0')}`, i)));
    const c = m.setTask(task('fez.9999', 1000));
    expect(c?.inserted).toEqual(['fez.9999']);
    expect(c?.removed).toEqual(['fez.0000']);
    expect(c?.order.length).toBe(PAGE_SIZE);
    expect(m.pageInfo()).toMatchObject({ pages: 2, matching: PAGE_SIZE + 1 });
  });

  it('filters by state and device and searches ids, names and tags', () => {
    const m = new VqpuPanelModel();
    m.setTasks([
      { ...task('fez.aaaa1111', 1, TaskState.COMPLETED), name: 'Bell pair', tags: ['week3'] },
      { ...task('fez.bbbb2222', 2, TaskState.FAILED), name: 'ghz-5' },
      { ...task('ideal.cccc3333', 3, TaskState.COMPLETED), device: 'ideal', tags: ['Week3', 'ghz'] }
    ]);
    expect(m.setFilter({ state: TaskState.COMPLETED }).order).toEqual(['ideal.cccc3333', 'fez.aaaa1111']);
    expect(m.setFilter({ device: 'fez' }).order).toEqual(['fez.aaaa1111']);
    expect(m.setFilter({ state: '', device: '', query: 'GHZ' }).order).toEqual(['ideal.cccc3333', 'fez.bbbb2222']);
    expect(m.setFilter({ query: 'week3' }).order).toEqual(['ideal.cccc3333', 'fez.aaaa1111']);
    expect(m.setFilter({ query: 'bbbb22' }).order).toEqual(['fez.bbbb2222']);
    expect(m.setFilter({ query: 'nothing like it' }).order).toEqual([]);
    expect(m.pageInfo()).toMatchObject({ matching: 0, total: 3, first: 0, last: 0 });
    expect(m.setFilter(NO_FILTER).order.length).toBe(3);
    // a filter goes back to the first page, and a task that stops matching leaves the list
    m.setFilter({ state: TaskState.FAILED });
    const c = m.setTask({ ...task('fez.bbbb2222', 2, TaskState.QUEUED) });
    expect(c?.removed).toEqual(['fez.bbbb2222']);
    expect(matchesTask(task('fez.x', 0), { state: '', device: '', query: '  ' })).toBe(true);
  });

  it('learns the control plane from device messages and from unreachable errors', () => {
    const m = new VqpuPanelModel();
    expect(m.controlPlane).toBeNull();
    m.applyEvent({ type: 'devices', devices: [], control_plane: { state: 'connected' } });
    expect(m.controlPlane?.state).toBe('connected');
    expect(m.noteFailure(new VqpuApiError('down', 503, 'control_plane_unavailable', 'wait'))).toBe(true);
    expect(m.controlPlane).toEqual({ state: 'unreachable', message: 'down', hint: 'wait' });
    // other failures say nothing about it
    expect(m.noteFailure(new VqpuApiError('nope', 404, 'task_not_found'))).toBe(false);
    expect(m.controlPlane?.state).toBe('unreachable');
    // an error message on the socket carries it too, and asks for no reload
    const e = m.applyEvent({ type: 'error', message: 'x', control_plane: { state: 'not_running' } });
    expect(m.controlPlane?.state).toBe('not_running');
    expect(e.refreshDevices).toBe(false);
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
