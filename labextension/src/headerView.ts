/**
 * The panel's header: its title, the live dot (`.jp-vqpu-connection`,
 * `data-mode`: whether updates reach the panel, see connection.ts), and a
 * Refresh button.
 */
import { type ILiveStatus, liveStatus } from './connection';
import { el } from './format';

export class HeaderView {
  /** `onRefresh` runs when Refresh is clicked. */
  constructor(onRefresh: () => void) {
    this.node = el('div', 'jp-vqpu-header');
    this.node.appendChild(el('h2', 'jp-vqpu-title', 'vQPU'));
    this._status = el('span', 'jp-vqpu-connection');
    this._status.setAttribute('role', 'status');
    this.setStatus(liveStatus('connecting', null));
    this.node.appendChild(this._status);
    const refresh = el('button', 'jp-vqpu-refresh jp-mod-styled', 'Refresh');
    refresh.type = 'button';
    refresh.title = 'Reload devices and tasks';
    refresh.addEventListener('click', () => onRefresh());
    this.node.appendChild(refresh);
  }

  readonly node: HTMLElement;

  /** Show the live dot's state (connection.ts says which). */
  setStatus(status: ILiveStatus): void {
    this._status.dataset.mode = status.mode;
    this._status.textContent = status.label;
    this._status.title = status.title;
  }

  private _status: HTMLElement;
}
