/**
 * The "Devices" section: one row per device with its status, queue depth,
 * qubits, agents and calibration snapshot (whose age ticks in place).
 *
 * DOM hooks the browser tests use: `.jp-vqpu-device[data-device]`,
 * `.jp-vqpu-device-status`.
 */
import type { IDevice } from './api';
import { el, humanizeSeconds, shortId } from './format';
import type { IKeyedChange, KeyedList } from './keyedList';
import { KeyedListView } from './listView';

/** The row of one device. */
export function renderDeviceRow(d: IDevice): HTMLElement {
  const status = (d.status || 'offline').toLowerCase();
  const row = el('li', 'jp-vqpu-device');
  row.dataset.device = d.name;
  row.dataset.status = status;

  const head = el('div', 'jp-vqpu-row-head');
  head.appendChild(el('span', 'jp-vqpu-device-name', d.name));
  const st = el('span', 'jp-vqpu-device-status');
  st.dataset.status = status;
  const dot = el('span', 'jp-vqpu-dot');
  dot.setAttribute('aria-hidden', 'true');
  st.appendChild(dot);
  st.appendChild(el('span', 'jp-vqpu-device-status-text', status));
  if (status === 'offline' && typeof d.offline_since === 'number') {
    st.title = `offline since ${new Date(d.offline_since * 1000).toLocaleString()}`;
  }
  head.appendChild(st);
  const queue = el('span', 'jp-vqpu-queue');
  const depth = d.queue_depth ?? 0;
  queue.textContent = `queue ${depth}`;
  queue.dataset.queueDepth = String(depth);
  queue.title = `${depth} task(s) queued` + (d.held ? `, ${d.held} held` : '');
  head.appendChild(queue);
  row.appendChild(head);

  const meta = el('div', 'jp-vqpu-row-meta');
  if (d.num_qubits) {
    meta.appendChild(el('span', 'jp-vqpu-qubits', `${d.num_qubits} qubits`));
  }
  const agents = d.agents ?? [];
  meta.appendChild(
    el(
      'span',
      'jp-vqpu-agents',
      `${agents.length} agent${agents.length === 1 ? '' : 's'}`
    )
  );
  const snap = el('span', 'jp-vqpu-snapshot');
  const snapId = el('code', 'jp-vqpu-snapshot-id', shortId(d.snapshot_id));
  snapId.title = d.snapshot_id
    ? `snapshot ${d.snapshot_id}` +
      (d.snapshot_version !== null && d.snapshot_version !== undefined
        ? ` (version ${d.snapshot_version})`
        : '')
    : 'no calibration snapshot yet';
  snap.appendChild(el('span', 'jp-vqpu-label', 'snapshot '));
  snap.appendChild(snapId);
  snap.appendChild(el('span', 'jp-vqpu-snapshot-age jp-vqpu-age'));
  meta.appendChild(snap);
  row.appendChild(meta);
  return row;
}

/** The text after the snapshot id: ` · 5 min old`, or nothing. */
export function snapshotAgeText(ageS: number | null): string {
  return ageS === null ? '' : ` · ${humanizeSeconds(ageS)} old`;
}

export class DeviceListView {
  constructor(devices: KeyedList<IDevice>) {
    this.node = el('section', 'jp-vqpu-section jp-vqpu-devices');
    this.node.appendChild(el('h3', 'jp-vqpu-section-title', 'Devices'));
    const list = el('ul', 'jp-vqpu-list jp-vqpu-device-list');
    this.node.appendChild(list);
    this._list = new KeyedListView(list, name =>
      renderDeviceRow(devices.get(name) as IDevice)
    );
    this._empty = el('div', 'jp-vqpu-empty', 'No devices registered.');
    this._empty.hidden = true;
    this.node.appendChild(this._empty);
    this._devices = devices;
  }

  readonly node: HTMLElement;

  update(change: IKeyedChange): void {
    this._list.apply(change);
    this._empty.hidden = !this._devices.loaded || change.order.length > 0;
  }

  /** Refresh the snapshot ages (`ageS(name)`: seconds, or null for none). */
  tick(ageS: (name: string) => number | null): void {
    for (const [name, row] of this._list.rows()) {
      const ageEl = row.querySelector<HTMLElement>('.jp-vqpu-snapshot-age');
      if (ageEl) {
        ageEl.textContent = snapshotAgeText(ageS(name));
      }
    }
  }

  private _devices: KeyedList<IDevice>;
  private _list: KeyedListView;
  private _empty: HTMLElement;
}
