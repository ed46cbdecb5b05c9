/**
 * The panel's error box: each error as one readable line plus, when the
 * server gave one, what to do about it. Hidden while there is none.
 */
import type { IShownError } from './errorLog';
import { el } from './format';

export class ErrorView {
  constructor() {
    this.node = el('div', 'jp-vqpu-error');
    this.node.setAttribute('role', 'alert');
    this.node.hidden = true;
  }

  readonly node: HTMLElement;

  render(errors: readonly IShownError[]): void {
    this.node.textContent = '';
    for (const { text, hint } of errors) {
      const item = el('div', 'jp-vqpu-error-item');
      item.appendChild(el('div', 'jp-vqpu-error-message', text));
      if (hint) {
        item.appendChild(el('div', 'jp-vqpu-error-hint', hint));
      }
      this.node.appendChild(item);
    }
    this.node.hidden = errors.length === 0;
  }
}
