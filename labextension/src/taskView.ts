/**
 * The "My tasks" section: one row per task with its name, state badge, what
 * the state means right now in plain words (place in line, error, most
 * frequent outcome), tags, shots, attempts, its age (ticking in place) and a
 * Cancel button until it is final. A click on a row opens the task.
 *
 * DOM hooks the browser tests use: `.jp-vqpu-task[data-task-id]`,
 * `.jp-vqpu-state` (text = state name, `data-state`), `.jp-vqpu-cancel`.
 */
import type { ITaskView } from './api';
import { displayTaskId, el, firstLine, humanizeSeconds } from './format';
import type { IKeyedChange, KeyedList } from './keyedList';
import { KeyedListView } from './listView';
import { TaskState, isFinalState } from './states';

/** The most frequent outcome of `counts` and its share, or null for none. */
export function topOutcome(
  counts: ITaskView['counts']
): { outcome: string; count: number; share: number } | null {
  if (!counts || typeof counts !== 'object') {
    return null;
  }
  const entries = Object.entries(counts).sort(
    (a, b) => b[1] - a[1] || a[0].localeCompare(b[0])
  );
  const total = entries.reduce((n, [, c]) => n + c, 0);
  if (!entries.length || !total) {
    return null;
  }
  return { outcome: entries[0][0], count: entries[0][1], share: entries[0][1] / total };
}

/** `0.4812` as `48.1%`. */
export function percent(share: number): string {
  return `${(share * 100).toFixed(1)}%`;
}

/** Whether the task's job went to Slurm (its executor says so). */
function onSlurm(t: ITaskView): boolean {
  return (t.executor ?? '').toLowerCase().startsWith('slurm');
}

/**
 * What the task is doing now, in plain words ('' for nothing to add): no
 * executor names, no job ids of the local executor, no snapshot hashes.
 */
export function taskStateDetail(t: ITaskView): string {
  switch (t.state) {
    case TaskState.QUEUED: {
      const where =
        typeof t.queue_position === 'number'
          ? t.queue_position === 1
            ? 'next in line'
            : `number ${t.queue_position} in line`
          : 'waiting in line';
      return t.notice ? `${where} (${t.notice})` : where;
    }
    case TaskState.CLAIMED:
      return 'picked up, preparing the run';
    case TaskState.SCHEDULED: {
      if (!onSlurm(t)) {
        return 'starting';
      }
      const job = t.job_id ? ` (Slurm job ${t.job_id})` : '';
      const reason = t.job_reason || t.reason;
      return `waiting for a place on the cluster${job}` + (reason ? `: ${reason}` : '');
    }
    case TaskState.RUNNING:
      return onSlurm(t)
        ? `simulating on the cluster${t.job_id ? ` (Slurm job ${t.job_id})` : ''}`
        : 'simulating';
    case TaskState.COMPLETED: {
      const top = topOutcome(t.counts);
      return top ? `most frequent: ${top.outcome} (${percent(top.share)})` : '';
    }
    case TaskState.FAILED:
      return firstLine(t.error || t.reason) || TaskState.FAILED;
    default:
      return firstLine(t.reason);
  }
}

/** The age label of a task created at `sinceS`, at server time `nowS`. */
export function taskAgeText(nowS: number, sinceS: number): string {
  const age = humanizeSeconds(nowS - sinceS);
  return age === 'just now' ? age : age + ' ago';
}

/** A state badge (`.jp-vqpu-state`, `data-state`), coloured by the shared palette. */
export function stateBadge(state: string): HTMLElement {
  const badge = el('span', 'jp-vqpu-state', state);
  badge.dataset.state = state;
  return badge;
}

/** The task's tags as chips (`.jp-vqpu-tag`), or null without any. */
export function tagChips(tags: ITaskView['tags']): HTMLElement | null {
  if (!Array.isArray(tags) || !tags.length) {
    return null;
  }
  const box = el('span', 'jp-vqpu-tags');
  for (const tag of tags) {
    box.appendChild(el('span', 'jp-vqpu-tag', String(tag)));
  }
  return box;
}

/**
 * The row of one task; `onCancel(id)` runs when its Cancel is clicked,
 * `onOpen(id)` when the row is clicked (or Enter is pressed on it).
 */
export function renderTaskRow(
  t: ITaskView,
  onCancel: (id: string) => void,
  onOpen: (id: string) => void = () => undefined
): HTMLElement {
  const state = t.state || 'unknown';
  const row = el('li', 'jp-vqpu-task');
  row.dataset.taskId = t.task_id;
  row.dataset.state = state;
  row.tabIndex = 0;
  row.title = `Open task ${t.task_id}`;
  row.addEventListener('click', ev => {
    if (!(ev.target as HTMLElement).closest('button')) {
      onOpen(t.task_id);
    }
  });
  row.addEventListener('keydown', ev => {
    if (ev.key === 'Enter' && ev.target === row) {
      onOpen(t.task_id);
    }
  });

  const head = el('div', 'jp-vqpu-row-head');
  if (t.name) {
    head.appendChild(el('span', 'jp-vqpu-task-name', t.name));
  }
  const id = el('code', 'jp-vqpu-task-id', displayTaskId(t.task_id));
  id.title = t.task_id;
  head.appendChild(id);
  head.appendChild(el('span', 'jp-vqpu-task-device', t.device || ''));
  head.appendChild(stateBadge(state));
  if (!isFinalState(state)) {
    const cancel = el('button', 'jp-vqpu-cancel jp-mod-styled', 'Cancel');
    cancel.type = 'button';
    cancel.title = `Cancel task ${t.task_id}`;
    cancel.addEventListener('click', ev => {
      ev.preventDefault();
      onCancel(t.task_id);
    });
    head.appendChild(cancel);
  }
  row.appendChild(head);

  const detail = taskStateDetail(t);
  if (detail) {
    const failed = state === TaskState.FAILED;
    const d = el(
      'div',
      failed ? 'jp-vqpu-state-detail jp-vqpu-task-error' : 'jp-vqpu-state-detail',
      detail
    );
    if (failed && t.error) {
      d.title = t.error;
    }
    row.appendChild(d);
  }

  const meta = el('div', 'jp-vqpu-row-meta');
  const tags = tagChips(t.tags);
  if (tags) {
    meta.appendChild(tags);
  }
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

export class TaskListView {
  /** `onCancel(id)` runs when a task's Cancel is clicked, `onOpen(id)` when its row is. */
  constructor(
    tasks: KeyedList<ITaskView>,
    onCancel: (id: string) => void,
    onOpen: (id: string) => void = () => undefined
  ) {
    this.node = el('section', 'jp-vqpu-section jp-vqpu-tasks');
    const title = el('h3', 'jp-vqpu-section-title', 'My tasks');
    this._count = el('span', 'jp-vqpu-task-count');
    title.appendChild(this._count);
    this.node.appendChild(title);
    this.toolbar = el('div', 'jp-vqpu-task-toolbar');
    this.node.appendChild(this.toolbar);
    const list = el('ul', 'jp-vqpu-list jp-vqpu-task-list');
    this.node.appendChild(list);
    this._list = new KeyedListView(list, id =>
      renderTaskRow(tasks.get(id) as ITaskView, onCancel, onOpen)
    );
    this._empty = el(
      'div',
      'jp-vqpu-empty',
      'No tasks yet. Run a cell with %%vqpu <device> to submit one.'
    );
    this._empty.hidden = true;
    this.node.appendChild(this._empty);
    this._tasks = tasks;
  }

  readonly node: HTMLElement;
  /** Where the filter and the pager go (taskFilterView.ts fills it). */
  readonly toolbar: HTMLElement;

  /** Apply a change; `summary` fills the "active / shown" count. */
  update(
    change: IKeyedChange,
    summary: { active: number; shown: number }
  ): void {
    this._list.apply(change);
    this._empty.hidden = !this._tasks.loaded || change.order.length > 0;
    this._empty.textContent =
      this._tasks.size > 0
        ? 'No task matches the filter.'
        : 'No tasks yet. Run a cell with %%vqpu <device> to submit one.';
    this._count.textContent = summary.shown
      ? `${summary.active} active / ${summary.shown}`
      : '';
  }

  /** Show that a cancel is under way (the next update of the row undoes it). */
  showCancelling(id: string): void {
    const button =
      this._list.row(id)?.querySelector<HTMLButtonElement>('.jp-vqpu-cancel');
    if (button) {
      button.disabled = true;
      button.textContent = 'Cancelling…';
    }
  }

  /** Put the keyboard focus on task `id`'s row (back from its detail view). */
  focusRow(id: string): void {
    this._list.row(id)?.focus();
  }

  /** Refresh the ages against the server's clock `nowS` (epoch seconds). */
  tick(nowS: number): void {
    for (const [, row] of this._list.rows()) {
      const ageEl = row.querySelector<HTMLElement>('.jp-vqpu-task-age');
      const since = ageEl?.dataset.since;
      if (ageEl && since) {
        ageEl.textContent = taskAgeText(nowS, Number(since));
      }
    }
  }

  private _tasks: KeyedList<ITaskView>;
  private _list: KeyedListView;
  private _count: HTMLElement;
  private _empty: HTMLElement;
}
