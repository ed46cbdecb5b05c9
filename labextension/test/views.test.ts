import { describe, expect, it, vi } from 'vitest';

import type { ITaskView } from '../src/api';
import { liveStatus } from '../src/connection';
import { DeviceListView, renderDeviceRow, snapshotAgeText } from '../src/deviceView';
import { ErrorView } from '../src/errorView';
import { HeaderView } from '../src/headerView';
import { KeyedList } from '../src/keyedList';
import { KeyedListView } from '../src/listView';
import { VqpuPanelModel } from '../src/panelModel';
import { FINAL_STATES, TASK_STATES, TaskState } from '../src/states';
import { TaskListView, renderTaskRow, taskAgeText, taskStateDetail } from '../src/taskView';

function letters(): { model: KeyedList<string>; view: KeyedListView; renders: string[] } {
  const model = new KeyedList<string>({
    key: s => s[0],
    signature: s => s,
    compare: (a, b) => a.localeCompare(b)
  });
  const renders: string[] = [];
  const view = new KeyedListView(document.createElement('ul'), key => {
    renders.push(key);
    const li = document.createElement('li');
    li.textContent = model.get(key) ?? '';
    return li;
  });
  return { model, view, renders };
}

const texts = (ul: HTMLElement) => Array.from(ul.children, c => c.textContent);

describe('KeyedListView', () => {
  it('renders new rows in order and keeps the nodes of unchanged ones', () => {
    const { model, view, renders } = letters();
    view.apply(model.replaceAll(['b1', 'a1', 'c1']));
    expect(texts(view.node)).toEqual(['a1', 'b1', 'c1']);
    const a = view.row('a');
    renders.length = 0;
    view.apply(model.replaceAll(['a1', 'b2', 'c1']));
    expect(texts(view.node)).toEqual(['a1', 'b2', 'c1']);
    expect(renders).toEqual(['b']);
    expect(view.row('a')).toBe(a);
    expect(view.node.children[0]).toBe(a);
  });

  it('moves, inserts and removes rows to follow the order', () => {
    const { model, view, renders } = letters();
    view.apply(model.replaceAll(['a', 'b', 'c']));
    const c = view.row('c');
    renders.length = 0;
    view.apply(model.replaceAll(['c', 'd']));
    expect(texts(view.node)).toEqual(['c', 'd']);
    expect(renders).toEqual(['d']);
    expect(view.node.children[0]).toBe(c);
    expect(view.row('a')).toBeUndefined();
    expect([...view.rows()].map(([k]) => k).sort()).toEqual(['c', 'd']);
  });
});

const task = (state: string, extra: Partial<ITaskView> = {}): ITaskView => ({
  task_id: 'fez.ABCDEFGHIJKLMNOP',
  device: 'fez',
  state,
  ...extra
});

describe('task rows', () => {
  it('have a Cancel button exactly while the task is not final', () => {
    for (const state of TASK_STATES) {
      const row = renderTaskRow(task(state), () => undefined);
      expect(row.dataset.state).toBe(state);
      expect(row.querySelector('.jp-vqpu-state')?.textContent).toBe(state);
      expect(!!row.querySelector('.jp-vqpu-cancel'), state).toBe(!FINAL_STATES.has(state));
    }
  });

  it('call back with the task id when Cancel is clicked', () => {
    const onCancel = vi.fn();
    const row = renderTaskRow(task(TaskState.RUNNING), onCancel);
    row.querySelector<HTMLButtonElement>('.jp-vqpu-cancel')?.click();
    expect(onCancel).toHaveBeenCalledWith('fez.ABCDEFGHIJKLMNOP');
  });

  it('say what the state means now, in plain words', () => {
    expect(taskStateDetail(task(TaskState.QUEUED, { queue_position: 3 }))).toBe('number 3 in line');
    expect(taskStateDetail(task(TaskState.QUEUED, { queue_position: 1 }))).toBe('next in line');
    expect(taskStateDetail(task(TaskState.CLAIMED, { agent: 'a1', snapshot_id: '0123456789abcdef' }))).toBe(
      'picked up, preparing the run'
    );
    // no local executor job ids ("local:fez....#1"), no executor names
    expect(
      taskStateDetail(task(TaskState.SCHEDULED, { executor: 'local', job_id: 'local:fez.ABCDEFGH#1' }))
    ).toBe('starting');
    expect(
      taskStateDetail(task(TaskState.SCHEDULED, { executor: 'slurm', job_id: 42, job_reason: 'Resources' }))
    ).toBe('waiting for a place on the cluster (Slurm job 42): Resources');
    expect(taskStateDetail(task(TaskState.RUNNING, { executor: 'slurm', job_id: 7 }))).toBe(
      'simulating on the cluster (Slurm job 7)'
    );
    expect(taskStateDetail(task(TaskState.RUNNING, { executor: 'local' }))).toBe('simulating');
    expect(taskStateDetail(task(TaskState.COMPLETED, { counts: { '00': 3, '11': 9 } }))).toBe(
      'most frequent: 11 (75.0%)'
    );
    expect(taskStateDetail(task(TaskState.FAILED, { error: '\nValueError: bad\nTraceback' }))).toBe(
      'ValueError: bad'
    );
    expect(taskStateDetail(task(TaskState.FAILED))).toBe('failed');
    expect(taskStateDetail(task(TaskState.CANCELLED, { reason: 'by user' }))).toBe('by user');
    const failed = renderTaskRow(task(TaskState.FAILED, { error: 'boom\nmore' }), () => undefined);
    expect(failed.querySelector('.jp-vqpu-task-error')?.getAttribute('title')).toBe('boom\nmore');
  });

  it('show the name and tags, and open on a click (but not on Cancel)', () => {
    const onOpen = vi.fn();
    const onCancel = vi.fn();
    const row = renderTaskRow(task(TaskState.RUNNING, { name: 'Bell', tags: ['a', 'b'] }), onCancel, onOpen);
    expect(row.querySelector('.jp-vqpu-task-name')?.textContent).toBe('Bell');
    expect(Array.from(row.querySelectorAll('.jp-vqpu-tag'), t => t.textContent)).toEqual(['a', 'b']);
    row.querySelector<HTMLButtonElement>('.jp-vqpu-cancel')?.click();
    expect(onOpen).not.toHaveBeenCalled();
    row.querySelector<HTMLElement>('.jp-vqpu-state')?.click();
    expect(onOpen).toHaveBeenCalledWith('fez.ABCDEFGHIJKLMNOP');
    expect(onCancel).toHaveBeenCalledTimes(1);
  });

  it('tick their age against the server clock', () => {
    expect(taskAgeText(1003, 1000)).toBe('just now');
    expect(taskAgeText(1090, 1000)).toBe('1 min ago');
    const model = new VqpuPanelModel();
    const view = new TaskListView(model.tasks, () => undefined);
    view.update(model.setTasks([task(TaskState.QUEUED, { created_at: 1000 })]), model.taskSummary());
    view.tick(1120);
    expect(view.node.querySelector('.jp-vqpu-task-age')?.textContent).toBe('2 min ago');
    expect(view.node.querySelector('.jp-vqpu-task-count')?.textContent).toBe('1 active / 1');
  });

  it('show "Cancelling…" until the row is invalidated, keeping other rows', () => {
    const model = new VqpuPanelModel();
    const view = new TaskListView(model.tasks, () => undefined);
    view.update(model.setTasks([task(TaskState.RUNNING)]), model.taskSummary());
    view.showCancelling('fez.ABCDEFGHIJKLMNOP');
    const button = () => view.node.querySelector<HTMLButtonElement>('.jp-vqpu-cancel');
    expect(button()?.disabled).toBe(true);
    expect(button()?.textContent).toBe('Cancelling…');
    view.update(model.tasks.invalidate('fez.ABCDEFGHIJKLMNOP'), model.taskSummary());
    expect(button()?.disabled).toBe(false);
    expect(button()?.textContent).toBe('Cancel');
  });

  it('say when the filter hides every task', () => {
    const model = new VqpuPanelModel();
    const view = new TaskListView(model.tasks, () => undefined);
    const empty = () => view.node.querySelector<HTMLElement>('.jp-vqpu-empty');
    view.update(model.setTasks([task(TaskState.RUNNING)]), model.taskSummary());
    expect(empty()?.hidden).toBe(true);
    view.update(model.setFilter({ state: TaskState.FAILED }), model.taskSummary());
    expect(empty()?.hidden).toBe(false);
    expect(empty()?.textContent).toBe('No task matches the filter.');
  });

  it('show the empty message only once a loaded list is empty', () => {
    const model = new VqpuPanelModel();
    const view = new TaskListView(model.tasks, () => undefined);
    const empty = () => view.node.querySelector<HTMLElement>('.jp-vqpu-empty');
    expect(empty()?.hidden).toBe(true);
    view.update(model.setTasks([]), model.taskSummary());
    expect(empty()?.hidden).toBe(false);
    expect(view.node.querySelector('.jp-vqpu-task-count')?.textContent).toBe('');
  });
});

describe('device rows', () => {
  it('show status, queue, qubits, agents and snapshot', () => {
    const row = renderDeviceRow({
      name: 'fez',
      status: 'Online',
      num_qubits: 156,
      queue_depth: 2,
      held: 1,
      agents: [{}],
      snapshot_id: '0123456789abcdef',
      snapshot_version: 3
    });
    expect(row.dataset.device).toBe('fez');
    expect(row.querySelector('.jp-vqpu-device-status')?.getAttribute('data-status')).toBe('online');
    expect(row.querySelector('.jp-vqpu-queue')?.textContent).toBe('queue 2');
    expect(row.querySelector('.jp-vqpu-queue')?.getAttribute('title')).toBe('2 task(s) queued, 1 held');
    expect(row.querySelector('.jp-vqpu-qubits')?.textContent).toBe('156 qubits');
    expect(row.querySelector('.jp-vqpu-agents')?.textContent).toBe('1 agent');
    expect(row.querySelector('.jp-vqpu-snapshot-id')?.getAttribute('title')).toBe(
      'snapshot 0123456789abcdef (version 3)'
    );
    const offline = renderDeviceRow({ name: 'x', status: '' });
    expect(offline.dataset.status).toBe('offline');
    expect(offline.querySelector('.jp-vqpu-agents')?.textContent).toBe('0 agents');
  });

  it('tick the snapshot age in place', () => {
    expect(snapshotAgeText(null)).toBe('');
    const model = new VqpuPanelModel();
    const view = new DeviceListView(model.devices);
    view.update(model.setDevices([{ name: 'fez', status: 'online', snapshot_age_s: 50 }], 0));
    const row = view.node.querySelector('.jp-vqpu-device');
    view.tick(name => model.snapshotAgeS(name, 70_000));
    expect(row?.querySelector('.jp-vqpu-snapshot-age')?.textContent).toBe(' · 2 min old');
    expect(view.node.querySelector('.jp-vqpu-device')).toBe(row);
  });
});

describe('header and errors', () => {
  it('show the connection mode and refresh on click', () => {
    const onRefresh = vi.fn();
    const header = new HeaderView(onRefresh);
    header.setStatus(liveStatus('polling', { state: 'connected' }));
    const status = header.node.querySelector<HTMLElement>('.jp-vqpu-connection');
    expect(status?.dataset.mode).toBe('polling');
    expect(status?.textContent).toBe('live (polling)');
    header.node.querySelector<HTMLButtonElement>('.jp-vqpu-refresh')?.click();
    expect(onRefresh).toHaveBeenCalledTimes(1);
  });

  it('render each error with its hint, and hide when there is none', () => {
    const view = new ErrorView();
    view.render([{ text: 'It broke.', hint: 'Do this.' }]);
    expect(view.node.hidden).toBe(false);
    expect(view.node.querySelector('.jp-vqpu-error-message')?.textContent).toBe('It broke.');
    expect(view.node.querySelector('.jp-vqpu-error-hint')?.textContent).toBe('Do this.');
    view.render([]);
    expect(view.node.hidden).toBe(true);
    expect(view.node.children.length).toBe(0);
  });
});
