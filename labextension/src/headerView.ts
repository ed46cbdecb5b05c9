/**
 * The panel's header: its title, how live updates arrive right now
 * (`.jp-vqpu-connection`, `data-mode`), and a Refresh button.
 */
import type { ConnectionMode } from './events';
import { el } from './format';

const MODE_LABELS: Record<ConnectionMode, string> = {
  connecting: 'connecting…',
  live: 'live',
  polling: 'polling',
  offline: 'offline'
};

const MODE_TITLES: Record<ConnectionMode, string> = {
  connecting: 'Connecting to the vQPU event stream',
  live: 'Live updates over a WebSocket',
  polling: 'Live updates by long-polling (WebSocket unavailable)',
  offline: 'Cannot reach the vQPU event stream; retrying'
};

export class HeaderView {
  /** `onRefresh` runs when Refresh is clicked. */
  constructor(onRefresh: () => void) {
    this.node = el('div', 'jp-vqpu-header');
    this.node.appendChild(el('h2', 'jp-vqpu-title', 'vQPU'));
    this._status = el('span', 'jp-vqpu-connection', MODE_LABELS.connecting);
    this._status.dataset.mode = 'connecting';
    this.node.appendChild(this._status);
    const refresh = el('button', 'jp-vqpu-refresh jp-mod-styled', 'Refresh');
    refresh.type = 'button';
    refresh.title = 'Reload devices and tasks';
    refresh.addEventListener('click', () => onRefresh());
    this.node.appendChild(refresh);
  }

  readonly node: HTMLElement;

  setMode(mode: ConnectionMode): void {
    this._status.dataset.mode = mode;
    this._status.textContent = MODE_LABELS[mode];
    this._status.title = MODE_TITLES[mode];
  }

  private _status: HTMLElement;
}
