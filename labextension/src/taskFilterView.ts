/**
 * The task list's toolbar: a search box (id, name, tags), a state and a
 * device filter, and a pager. It only reports what the user picked; the
 * panel hands that to the model (panelModel.ts: setFilter, setPage).
 *
 * DOM hooks the browser tests use: `.jp-vqpu-search`, `.jp-vqpu-filter-state`,
 * `.jp-vqpu-filter-device`, `.jp-vqpu-page-prev`, `.jp-vqpu-page-next`,
 * `.jp-vqpu-page-label`.
 */
import { el } from './format';
import type { IPageInfo, ITaskFilter } from './panelModel';
import { TASK_STATES } from './states';

export interface ITaskFilterCallbacks {
  onFilter: (filter: Partial<ITaskFilter>) => void;
  onPage: (delta: number) => void;
}

/** `1–20 of 45`, `3 of 3`, `none`; with `(filtered from N)` when the filter hides some. */
export function pageLabel(p: IPageInfo): string {
  if (!p.matching) {
    return p.total ? `none of ${p.total}` : 'none';
  }
  const range = p.first === p.last ? `${p.first}` : `${p.first}–${p.last}`;
  const of = `${range} of ${p.matching}`;
  return p.matching < p.total ? `${of} (filtered from ${p.total})` : of;
}

function select(className: string, label: string, anyText: string): HTMLSelectElement {
  const s = el('select', `${className} jp-vqpu-select`);
  s.setAttribute('aria-label', label);
  s.title = label;
  const any = el('option', undefined, anyText);
  any.value = '';
  s.appendChild(any);
  return s;
}

export class TaskFilterView {
  constructor(callbacks: ITaskFilterCallbacks) {
    this.node = el('div', 'jp-vqpu-filter');
    this._search = el('input', 'jp-vqpu-search');
    this._search.type = 'search';
    this._search.placeholder = 'Search id, name, tag';
    this._search.setAttribute('aria-label', 'Search tasks by id, name or tag');
    this._search.addEventListener('input', () =>
      callbacks.onFilter({ query: this._search.value })
    );
    this.node.appendChild(this._search);

    const row = el('div', 'jp-vqpu-filter-row');
    this._state = select('jp-vqpu-filter-state', 'Show tasks in this state', 'any state');
    for (const s of TASK_STATES) {
      const o = el('option', undefined, s);
      o.value = s;
      this._state.appendChild(o);
    }
    this._state.addEventListener('change', () =>
      callbacks.onFilter({ state: this._state.value })
    );
    row.appendChild(this._state);
    this._device = select('jp-vqpu-filter-device', 'Show tasks on this device', 'any device');
    this._device.addEventListener('change', () =>
      callbacks.onFilter({ device: this._device.value })
    );
    row.appendChild(this._device);
    this.node.appendChild(row);

    const pager = el('div', 'jp-vqpu-pager');
    this._prev = el('button', 'jp-vqpu-page-prev jp-mod-styled', '‹ Newer');
    this._prev.type = 'button';
    this._prev.title = 'Newer tasks';
    this._prev.addEventListener('click', () => callbacks.onPage(-1));
    this._label = el('span', 'jp-vqpu-page-label');
    this._next = el('button', 'jp-vqpu-page-next jp-mod-styled', 'Older ›');
    this._next.type = 'button';
    this._next.title = 'Older tasks';
    this._next.addEventListener('click', () => callbacks.onPage(1));
    pager.append(this._prev, this._label, this._next);
    this.node.appendChild(pager);
  }

  readonly node: HTMLElement;

  /** Offer these devices in the device filter (keeping the one picked). */
  setDevices(names: readonly string[]): void {
    const current = this._device.value;
    const have = Array.from(this._device.options, o => o.value).slice(1);
    if (have.join('\n') === names.join('\n')) {
      return;
    }
    while (this._device.options.length > 1) {
      this._device.remove(1);
    }
    for (const name of names) {
      const o = el('option', undefined, name);
      o.value = name;
      this._device.appendChild(o);
    }
    this._device.value = names.includes(current) ? current : '';
  }

  /** Show where the list is. */
  setPage(p: IPageInfo): void {
    this._label.textContent = pageLabel(p);
    this._prev.disabled = p.page <= 0;
    this._next.disabled = p.page >= p.pages - 1;
  }

  private _search: HTMLInputElement;
  private _state: HTMLSelectElement;
  private _device: HTMLSelectElement;
  private _prev: HTMLButtonElement;
  private _next: HTMLButtonElement;
  private _label: HTMLElement;
}
