/**
 * The "My tasks" section: one row per task with its state badge, what the
 * state means right now (queue position, job, error, top outcome), shots,
 * attempts, its age (ticking in place) and a Cancel button until it is final.
 *
 * DOM hooks the browser tests use: `.jp-vqpu-task[data-task-id]`,
 * `.jp-vqpu-state` (text = state name, `data-state`), `.jp-vqpu-cancel`.
 */
import type { ITaskView } from './api';
import { displayTaskId, el, firstLine, humanizeSeconds, shortId } from './format';
import type { IKeyedChange, KeyedList } from './keyedList';
import { KeyedListView } from './listView';
import { TaskState, isFinalState } from './states';

/** The one-line detail under a task's head, for its state ('' for none). */
export function taskStateDetail(t: ITaskView): string {
  switch (t.state) {
    case TaskState.QUEUED:
      return typeof t.queue_position === 'number'
        ? `position ${t.queue_position}`
        : '';
    case TaskState.CLAIMED: {
      const parts: string[] = [];
      if (t.agent) {
        parts.push(`by ${t.agent}`);
      }
      if (t.snapshot_id) {
        parts.push(`snapshot ${shortId(t.snapshot_id)}`);
      }
      return parts.join(', ');
    }
    case TaskState.SCHEDULED: {
      const reason = t.job_reason || t.reason;
      const job =
        t.job_id !== null && t.job_id !== undefined && t.job_id !== ''
          ? `job ${t.job_id}`
          : '';
      return [job, reason ? `(${reason})` : ''].filter(Boolean).join(' ');
    }
    case TaskState.RUNNING:
      return [
        t.executor ? `on ${t.executor}` : '',
        t.job_id ? `job ${t.job_id}` : ''
      ]
        .filter(Boolean)
        .join(', ');
    case TaskState.COMPLETED: {
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

/** The row of one task; `onCancel(id)` runs when its Cancel is clicked. */
export function renderTaskRow(
  t: ITaskView,
  onCancel: (id: string) => void
): HTMLElement {
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
  /** `onCancel(id)` runs when a task's Cancel button is clicked. */
  constructor(tasks: KeyedList<ITaskView>, onCancel: (id: string) => void) {
    this.node = el('section', 'jp-vqpu-section jp-vqpu-tasks');
    const title = el('h3', 'jp-vqpu-section-title', 'My tasks');
    this._count = el('span', 'jp-vqpu-task-count');
    title.appendChild(this._count);
    this.node.appendChild(title);
    const list = el('ul', 'jp-vqpu-list jp-vqpu-task-list');
    this.node.appendChild(list);
    this._list = new KeyedListView(list, id =>
      renderTaskRow(tasks.get(id) as ITaskView, onCancel)
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

  /** Apply a change; `summary` fills the "active / shown" count. */
  update(
    change: IKeyedChange,
    summary: { active: number; shown: number }
  ): void {
    this._list.apply(change);
    this._empty.hidden = !this._tasks.loaded || summary.shown > 0;
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
