import { describe, expect, it, vi } from 'vitest';

import type { ITaskView } from '../src/api';
import { liveStatus } from '../src/connection';
import { TaskDetailView, histogramRows, historyText, qpyNote, renderTaskDetail } from '../src/taskDetailView';
import { TaskFilterView, pageLabel } from '../src/taskFilterView';
import { TaskState } from '../src/states';

const done: ITaskView = {
  task_id: 'fez.0ABCDEFGHIJKLMN',
  device: 'fez',
  state: TaskState.COMPLETED,
  name: 'Bell pair',
  tags: ['week3'],
  shots: 1000,
  snapshot_id: 'f'.repeat(64),
  created_at: 1000,
  claimed_at: 1001,
  started_at: 1002,
  finished_at: 1010,
  counts: { '00': 480, '11': 470, '01': 30, '10': 20 },
  history: [
    { ts: 1_000_000, event: 'queued' },
    { ts: 1_001_000, event: 'claimed', agent: 'agent-1', attempt: 1, token: '1-5e1f0c2a' },
    { ts: 1_010_000, event: 'completed' }
  ]
};
const circuit = { task_id: done.task_id, format: 'qasm3', circuit: 'OPENQASM 3.0;\nh q[0];', transpiled_qasm: 'OPENQASM 3.0;\nrz(pi/2) $0;' };
const callbacks = { onBack: () => undefined, onCancel: () => undefined };

describe('the histogram', () => {
  it('orders outcomes by count with their shares and sums up the rest', () => {
    const h = histogramRows({ '00': 480, '11': 470, '01': 30, '10': 20 }, 2);
    expect(h.rows).toEqual([
      { outcome: '00', count: 480, share: 0.48 },
      { outcome: '11', count: 470, share: 0.47 }
    ]);
    expect([h.total, h.otherOutcomes, h.otherCount]).toEqual([1000, 2, 50]);
    expect(histogramRows(null).rows).toEqual([]);
  });
});

describe('the detail view', () => {
  it('shows what the task is, its outcomes, times, history and both circuits', () => {
    const node = renderTaskDetail(done, circuit, callbacks);
    expect(node.dataset.taskId).toBe(done.task_id);
    expect(node.querySelector('.jp-vqpu-detail-name')?.textContent).toBe('Bell pair');
    expect(node.querySelector('.jp-vqpu-detail-id')?.textContent).toBe(done.task_id);
    expect(node.querySelector('.jp-vqpu-tag')?.textContent).toBe('week3');
    const rows = Array.from(node.querySelectorAll<HTMLElement>('.jp-vqpu-histogram-row'));
    expect(rows.map(r => r.dataset.outcome)).toEqual(['00', '11', '01', '10']);
    expect(rows[0].querySelector('.jp-vqpu-share')?.textContent).toBe('48.0%');
    expect(node.querySelector('.jp-vqpu-outcomes h4')?.textContent).toBe('Outcomes (1000 shots)');
    expect(Array.from(node.querySelectorAll('.jp-vqpu-times dt'), d => d.textContent)).toEqual([
      'Submitted', 'Picked up', 'Started', 'Finished'
    ]);
    expect(Array.from(node.querySelectorAll('.jp-vqpu-history li'), li => li.getAttribute('data-event'))).toEqual([
      'queued', 'claimed', 'completed'
    ]);
    expect(node.querySelector('.jp-vqpu-circuit pre')?.textContent).toBe(circuit.circuit);
    expect(node.querySelector('.jp-vqpu-transpiled pre')?.textContent).toBe(circuit.transpiled_qasm);
    expect(node.querySelector('.jp-vqpu-cancel')).toBeNull();
  });

  it('says what a QPY circuit is instead of showing its base64', () => {
    const qpy = { ...circuit, format: 'qpy', circuit: 'UUlTS0lUDQ'.repeat(300) };
    const node = renderTaskDetail(done, qpy, callbacks);
    expect(node.querySelector('.jp-vqpu-circuit pre')).toBeNull();
    const note = node.querySelector('.jp-vqpu-circuit .jp-vqpu-empty')?.textContent ?? '';
    expect(note).toContain('Sent as QPY (2.2 KiB)');
    expect(note).not.toContain('UUlTS0lU');
    expect(node.querySelector('.jp-vqpu-transpiled pre')?.textContent).toBe(circuit.transpiled_qasm);
    expect(qpyNote('AAAA')).toContain('(3 B)');
  });

  it('says why a circuit is missing, and offers Cancel while the task is live', () => {
    const onCancel = vi.fn();
    const node = renderTaskDetail({ ...done, state: TaskState.RUNNING, counts: null }, { ...circuit, transpiled_qasm: null }, { ...callbacks, onCancel });
    expect(node.querySelector('.jp-vqpu-transpiled')?.textContent).toContain('Shown once the task has run.');
    expect(node.querySelector('.jp-vqpu-histogram')).toBeNull();
    node.querySelector<HTMLButtonElement>('.jp-vqpu-cancel')?.click();
    expect(onCancel).toHaveBeenCalledWith(done.task_id);
    expect(renderTaskDetail(done, null, callbacks).querySelector('.jp-vqpu-circuit-loading')).not.toBeNull();
  });

  it('copies the id with its Copy button', async () => {
    const writeText = vi.fn(() => Promise.resolve());
    Object.defineProperty(navigator, 'clipboard', { value: { writeText }, configurable: true });
    const node = renderTaskDetail(done, circuit, callbacks);
    const copy = node.querySelector<HTMLButtonElement>('.jp-vqpu-copy-id');
    copy?.click();
    await vi.waitFor(() => expect(copy?.textContent).toBe('Copied'));
    expect(writeText).toHaveBeenCalledWith(done.task_id);
  });

  it('keeps open sections open when the task changes', () => {
    const view = new TaskDetailView(callbacks);
    view.show(done, circuit);
    view.node.querySelector<HTMLDetailsElement>('.jp-vqpu-transpiled')!.open = true;
    view.show({ ...done, attempts: 2 }, circuit);
    expect(view.node.querySelector<HTMLDetailsElement>('.jp-vqpu-transpiled')?.open).toBe(true);
    expect(view.node.querySelector<HTMLDetailsElement>('.jp-vqpu-circuit')?.open).toBe(false);
    view.hide();
    expect([view.node.hidden, view.taskId]).toEqual([true, null]);
  });

  it('says where the time went and what simulated it, without jargon', () => {
    const node = renderTaskDetail(
      { ...done, phases: { queued: 0.25, total: 75 }, simulator: { device: 'CPU', method: 'density_matrix' } },
      circuit,
      callbacks
    );
    const fields = Object.fromEntries(
      Array.from(node.querySelectorAll('.jp-vqpu-fields dt'), dt => [dt.textContent, dt.nextElementSibling?.textContent])
    );
    expect(fields['Waited']).toBe('0.25 s');
    expect(fields['Took in all']).toBe('1 min 15 s');
    expect(fields['Simulated on']).toBe('CPUs');
    expect(node.textContent).not.toContain('density_matrix');
  });

  it('words history in plain language', () => {
    expect(historyText({ ts: 0, event: 'scheduled' })).toBe('job submitted');
    expect(historyText({ ts: 0, event: 'claimed', agent: 'a', attempt: 2, token: '2-9f2c1a0b' })).toBe('picked up by a (attempt 2)');
    expect(historyText({ ts: 0, event: 'cancelled', by: 'ada' })).toBe('cancelled by ada');
    expect(historyText({ ts: 0, event: 'failed', reason: 'bad_result' })).toBe('failed: bad result');
    expect(historyText({ ts: 0, event: 'queued', previous: 'running', reason: 'lease_expired' })).toBe(
      'back in line: the agent running it stopped answering'
    );
    expect(historyText({ ts: 0, event: 'queued' })).toBe('submitted, waiting in line');
  });
});

describe('the filter bar and pager', () => {
  it('reports what is picked and labels the page', () => {
    const onFilter = vi.fn();
    const onPage = vi.fn();
    const view = new TaskFilterView({ onFilter, onPage });
    view.setDevices(['fez', 'ideal']);
    const device = view.node.querySelector<HTMLSelectElement>('.jp-vqpu-filter-device')!;
    device.value = 'ideal';
    device.dispatchEvent(new Event('change'));
    expect(onFilter).toHaveBeenCalledWith({ device: 'ideal' });
    const search = view.node.querySelector<HTMLInputElement>('.jp-vqpu-search')!;
    search.value = 'bell';
    search.dispatchEvent(new Event('input'));
    expect(onFilter).toHaveBeenLastCalledWith({ query: 'bell' });
    view.setPage({ page: 0, pages: 3, matching: 45, total: 50, first: 1, last: 20 });
    expect(view.node.querySelector('.jp-vqpu-page-label')?.textContent).toBe('1–20 of 45 (filtered from 50)');
    expect(view.node.querySelector<HTMLButtonElement>('.jp-vqpu-page-prev')?.disabled).toBe(true);
    view.node.querySelector<HTMLButtonElement>('.jp-vqpu-page-next')?.click();
    expect(onPage).toHaveBeenCalledWith(1);
    expect(pageLabel({ page: 0, pages: 1, matching: 0, total: 0, first: 0, last: 0 })).toBe('none');
  });
});

describe('the live dot', () => {
  it('is green only when the socket and the control plane both work', () => {
    expect(liveStatus('live', { state: 'connected' }).mode).toBe('live');
    expect(liveStatus('live', null).mode).toBe('connecting');
    const down = liveStatus('live', { state: 'unreachable', message: 'Redis is down', hint: 'wait' });
    expect(down.mode).toBe('unreachable');
    expect(down.title).toBe('Redis is down — wait');
    expect(liveStatus('polling', { state: 'not_running' }).label).toBe('not running');
    expect(liveStatus('offline', { state: 'connected' }).mode).toBe('offline');
  });
});
