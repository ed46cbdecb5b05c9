/**
 * One task, opened from the list: what it is (name, tags, id with a Copy
 * button, device, shots, calibration snapshot), where it is now in plain
 * words, when each step happened, its history, its histogram (counts with
 * percentages), and the circuit as submitted and as transpiled for the device.
 *
 * Pure rendering from a task view and its circuit (api.ts); the panel fetches
 * them. DOM hooks the browser tests use: `.jp-vqpu-detail[data-task-id]`,
 * `.jp-vqpu-detail-back`, `.jp-vqpu-copy-id`, `.jp-vqpu-histogram` (rows
 * `.jp-vqpu-histogram-row[data-outcome]`), `.jp-vqpu-history`,
 * `.jp-vqpu-times`, `.jp-vqpu-circuit`, `.jp-vqpu-transpiled`.
 */
import type { IHistoryEntry, ITaskCircuit, ITaskView } from './api';
import { el, shortId } from './format';
import { TaskState, isFinalState } from './states';
import { percent, stateBadge, tagChips, taskStateDetail } from './taskView';

/** Outcomes shown in the histogram (the rest are summed up in one line). */
export const HISTOGRAM_ROWS = 16;

export interface IHistogramRow {
  readonly outcome: string;
  readonly count: number;
  readonly share: number;
}

/** The histogram's rows, most frequent first, and what is left out. */
export function histogramRows(
  counts: ITaskView['counts'],
  max = HISTOGRAM_ROWS
): { rows: IHistogramRow[]; total: number; otherOutcomes: number; otherCount: number } {
  const entries = Object.entries(counts ?? {}).sort(
    (a, b) => b[1] - a[1] || a[0].localeCompare(b[0])
  );
  const total = entries.reduce((n, [, c]) => n + c, 0);
  const rows = entries
    .slice(0, max)
    .map(([outcome, count]) => ({ outcome, count, share: total ? count / total : 0 }));
  const rest = entries.slice(max);
  return {
    rows,
    total,
    otherOutcomes: rest.length,
    otherCount: rest.reduce((n, [, c]) => n + c, 0)
  };
}

/** Each lifecycle step, in plain words, and the field of its timestamp. */
export const TIMESTAMPS: readonly (readonly [string, keyof ITaskView])[] = [
  ['Submitted', 'created_at'],
  ['Picked up', 'claimed_at'],
  ['Job submitted', 'scheduled_at'],
  ['Started', 'started_at'],
  ['Finished', 'finished_at']
];

/** Reason codes of the control plane, in plain words (others: their code, spaced). */
const REASONS: Record<string, string> = {
  lease_expired: 'the agent running it stopped answering',
  lost: 'its agent vanished on every attempt'
};

/** What a history entry says, in plain words. */
export function historyText(e: IHistoryEntry): string {
  const by = e.by ? ` by ${e.by}` : '';
  const reason = typeof e.reason === 'string' ? (REASONS[e.reason] ?? e.reason.replace(/_/g, ' ')) : '';
  const why = reason ? `: ${reason}` : '';
  switch (e.event) {
    case TaskState.QUEUED:
      // a task put back in line (its agent vanished) says what it was before
      return e.previous ? `back in line${why}` : 'submitted, waiting in line';
    case TaskState.CLAIMED:
      return `picked up${e.agent ? ` by ${e.agent}` : ''}` + (e.attempt ? ` (attempt ${e.attempt})` : '');
    case TaskState.SCHEDULED:
      return 'job submitted';
    case TaskState.RUNNING:
      return 'simulation started';
    case TaskState.COMPLETED:
      return 'finished';
    case TaskState.FAILED:
      return `failed${why}`;
    case TaskState.CANCELLED:
      return `cancelled${by}`;
    default:
      return `${e.event}${by}${why}`;
  }
}

function clock(epochS: number): string {
  return new Date(epochS * 1000).toLocaleTimeString([], {
    hour: '2-digit',
    minute: '2-digit',
    second: '2-digit',
    hour12: false
  });
}

/** `0.94` as `0.94 s`, `75` as `1 min 15 s`. */
export function seconds(s: number): string {
  if (s < 60) {
    return `${s < 10 ? s.toFixed(2) : Math.round(s)} s`;
  }
  const m = Math.floor(s / 60);
  const rest = Math.round(s - m * 60);
  return rest ? `${m} min ${rest} s` : `${m} min`;
}

function section(title: string, className: string): HTMLElement {
  const s = el('section', `jp-vqpu-detail-section ${className}`);
  s.appendChild(el('h4', 'jp-vqpu-detail-title', title));
  return s;
}

function field(dl: HTMLElement, label: string, value: string | Node): void {
  dl.appendChild(el('dt', undefined, label));
  const dd = el('dd');
  dd.append(value);
  dl.appendChild(dd);
}

/** Put `text` on the clipboard; whether it worked (no clipboard without a secure page). */
async function copyText(text: string): Promise<boolean> {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    return false;
  }
}

export interface ITaskDetailCallbacks {
  onBack: () => void;
  onCancel: (id: string) => void;
}

/** The detail view of task `t` (with its circuit once fetched, else null). */
export function renderTaskDetail(
  t: ITaskView,
  circuit: ITaskCircuit | null,
  callbacks: ITaskDetailCallbacks
): HTMLElement {
  const root = el('div', 'jp-vqpu-detail');
  root.dataset.taskId = t.task_id;
  root.dataset.state = t.state;

  const bar = el('div', 'jp-vqpu-detail-bar');
  const back = el('button', 'jp-vqpu-detail-back jp-mod-styled', '‹ All tasks');
  back.type = 'button';
  back.addEventListener('click', () => callbacks.onBack());
  bar.appendChild(back);
  if (!isFinalState(t.state)) {
    const cancel = el('button', 'jp-vqpu-cancel jp-mod-styled', 'Cancel');
    cancel.type = 'button';
    cancel.title = `Cancel task ${t.task_id}`;
    cancel.addEventListener('click', () => callbacks.onCancel(t.task_id));
    bar.appendChild(cancel);
  }
  root.appendChild(bar);

  const head = el('div', 'jp-vqpu-detail-head');
  head.appendChild(el('h3', 'jp-vqpu-detail-name', t.name || 'Unnamed task'));
  head.appendChild(stateBadge(t.state));
  root.appendChild(head);
  const now = taskStateDetail(t);
  if (now) {
    root.appendChild(el('div', 'jp-vqpu-state-detail', now));
  }

  // ---- what it is
  const dl = el('dl', 'jp-vqpu-fields');
  const idBox = el('span', 'jp-vqpu-id-box');
  idBox.appendChild(el('code', 'jp-vqpu-detail-id', t.task_id));
  const copy = el('button', 'jp-vqpu-copy-id jp-mod-styled', 'Copy');
  copy.type = 'button';
  copy.title = 'Copy the task id';
  copy.addEventListener('click', () => {
    void copyText(t.task_id).then(ok => {
      copy.textContent = ok ? 'Copied' : 'Select and copy';
      copy.dataset.copied = String(ok);
    });
  });
  idBox.appendChild(copy);
  field(dl, 'Task id', idBox);
  const tags = tagChips(t.tags);
  if (tags) {
    field(dl, 'Tags', tags);
  }
  field(dl, 'Device', t.device);
  if (t.shots) {
    field(dl, 'Shots', String(t.shots));
  }
  if (t.attempts && t.attempts > 1) {
    field(dl, 'Attempts', String(t.attempts));
  }
  if (t.snapshot_id) {
    const snap = el('code', undefined, shortId(t.snapshot_id));
    snap.title = t.snapshot_id;
    const wrap = el('span');
    wrap.append(snap, t.pinned ? ' (chosen for this task)' : '');
    field(dl, 'Calibration', wrap);
  }
  if (t.simulator?.device) {
    const on = el('span', undefined, t.simulator.device === 'GPU' ? 'a GPU' : 'CPUs');
    on.title = [t.simulator.method, t.simulator.reason].filter(Boolean).join(': ');
    field(dl, 'Simulated on', on);
  }
  const phases = t.phases ?? {};
  if (typeof phases.queued === 'number') {
    field(dl, 'Waited', seconds(phases.queued));
  }
  if (typeof phases.total === 'number') {
    field(dl, 'Took in all', seconds(phases.total));
  }
  if (t.error) {
    const err = el('pre', 'jp-vqpu-task-error', t.error);
    field(dl, 'Error', err);
  }
  root.appendChild(dl);

  // ---- histogram
  if (t.counts && Object.keys(t.counts).length) {
    const h = histogramRows(t.counts);
    const s = section(`Outcomes (${h.total} shots)`, 'jp-vqpu-outcomes');
    const table = el('table', 'jp-vqpu-histogram');
    const top = h.rows.length ? h.rows[0].share : 1;
    const header = el('tr');
    header.append(el('th', undefined, 'outcome'), el('th', undefined, 'count'), el('th', undefined, 'share'), el('th'));
    table.appendChild(header);
    for (const r of h.rows) {
      const tr = el('tr', 'jp-vqpu-histogram-row');
      tr.dataset.outcome = r.outcome;
      const bar = el('span', 'jp-vqpu-bar');
      bar.style.width = `${Math.max(1, Math.round((r.share / top) * 100))}%`;
      const barCell = el('td', 'jp-vqpu-bar-cell');
      barCell.appendChild(bar);
      tr.append(
        el('td', 'jp-vqpu-outcome', r.outcome),
        el('td', 'jp-vqpu-count', String(r.count)),
        el('td', 'jp-vqpu-share', percent(r.share)),
        barCell
      );
      table.appendChild(tr);
    }
    s.appendChild(table);
    if (h.otherOutcomes) {
      s.appendChild(
        el(
          'div',
          'jp-vqpu-histogram-rest',
          `${h.otherOutcomes} more outcome${h.otherOutcomes === 1 ? '' : 's'}: ${h.otherCount} shots (${percent(h.otherCount / h.total)})`
        )
      );
    }
    root.appendChild(s);
  }

  // ---- when
  const times = section('When', 'jp-vqpu-times');
  const tl = el('dl', 'jp-vqpu-fields');
  let previous: number | null = null;
  for (const [label, key] of TIMESTAMPS) {
    const at = t[key];
    if (typeof at !== 'number') {
      continue;
    }
    const when = el('span', undefined, clock(at));
    when.title = new Date(at * 1000).toLocaleString();
    if (previous !== null) {
      when.append(' ', el('span', 'jp-vqpu-after', `+${seconds(Math.max(0, at - previous))}`));
    }
    field(tl, label, when);
    previous = at;
  }
  times.appendChild(tl);
  root.appendChild(times);

  // ---- history
  const history = Array.isArray(t.history) ? t.history : [];
  if (history.length) {
    const s = section('History', 'jp-vqpu-history');
    const ol = el('ol', 'jp-vqpu-history-list');
    for (const e of history) {
      const li = el('li');
      li.dataset.event = e.event;
      li.append(el('span', 'jp-vqpu-history-time', clock(e.ts / 1000)), ' ', historyText(e));
      ol.appendChild(li);
    }
    s.appendChild(ol);
    root.appendChild(s);
  }

  // ---- circuits
  const code = (title: string, className: string, text: string | null, missing: string) => {
    const d = el('details', `jp-vqpu-code ${className}`);
    d.appendChild(el('summary', undefined, title));
    if (text) {
      d.appendChild(el('pre', 'jp-vqpu-code-text', text));
    } else {
      d.appendChild(el('div', 'jp-vqpu-empty', missing));
    }
    root.appendChild(d);
    return d;
  };
  if (circuit) {
    if (circuit.format === 'qpy') {
      // Qiskit's binary format (base64): exact, but not for reading; the transpiled text below is.
      const d = code('Circuit, as submitted', 'jp-vqpu-circuit', null, '');
      d.querySelector('.jp-vqpu-empty')!.textContent = qpyNote(circuit.circuit);
    } else {
      code('Circuit, as submitted', 'jp-vqpu-circuit', circuit.circuit, 'no circuit text');
    }
    code(
      'Circuit, as run on the device (transpiled)',
      'jp-vqpu-transpiled',
      circuit.transpiled_qasm,
      t.state === TaskState.COMPLETED
        ? 'Not recorded: the transpiled circuit was too long to keep.'
        : 'Shown once the task has run.'
    );
  } else {
    root.appendChild(el('div', 'jp-vqpu-empty jp-vqpu-circuit-loading', 'Loading the circuit…'));
  }
  return root;
}

/** What the panel says of a circuit sent as QPY (base64 text): its size, and where to read it. */
export function qpyNote(base64: string | null): string {
  const bytes = Math.floor(((base64 ?? '').replace(/=+$/, '').length * 3) / 4);
  const size = bytes >= 1024 ? `${(bytes / 1024).toFixed(1)} KiB` : `${bytes} B`;
  return (
    `Sent as QPY (${size}), Qiskit's exact binary form: not text to read here. ` +
    'The transpiled circuit below is what ran; qiskit.qpy.load reads the original.'
  );
}

/** The detail pane: shows one task at a time, or nothing (hidden). */
export class TaskDetailView {
  constructor(callbacks: ITaskDetailCallbacks) {
    this.node = el('div', 'jp-vqpu-detail-pane');
    this.node.hidden = true;
    this._callbacks = callbacks;
  }

  readonly node: HTMLElement;

  /** The task shown (null while hidden). */
  get taskId(): string | null {
    return this._taskId;
  }

  show(t: ITaskView, circuit: ITaskCircuit | null): void {
    const open = new Set(
      Array.from(this.node.querySelectorAll('details[open]'), d => d.className)
    );
    this._taskId = t.task_id;
    this.node.replaceChildren(renderTaskDetail(t, circuit, this._callbacks));
    for (const d of Array.from(this.node.querySelectorAll('details'))) {
      if (open.has(d.className)) {
        d.open = true;
      }
    }
    this.node.hidden = false;
  }

  hide(): void {
    this._taskId = null;
    this.node.hidden = true;
    this.node.replaceChildren();
  }

  private _callbacks: ITaskDetailCallbacks;
  private _taskId: string | null = null;
}
