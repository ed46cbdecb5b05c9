/**
 * A `<ul>` of keyed rows that applies a KeyedList change (keyedList.ts) to
 * the DOM: rows the change names are rendered again, the rest keep their node
 * (and with it focus, hover and whatever a test holds), rows are put in the
 * change's order with as few moves as possible, and gone ones are removed.
 * The one DOM-side keyed update, shared by the device and the task lists.
 */
import type { IKeyedChange } from './keyedList';

export class KeyedListView {
  /**
   * @param node - the list element (its children are managed here).
   * @param render - builds the row for a key (called for new and changed rows).
   */
  constructor(
    readonly node: HTMLElement,
    private readonly _render: (key: string) => HTMLElement
  ) {}

  /** The row shown for `key`, if any. */
  row(key: string): HTMLElement | undefined {
    return this._rows.get(key);
  }

  /** The rows shown, with their keys (in no particular order). */
  rows(): IterableIterator<[string, HTMLElement]> {
    return this._rows.entries();
  }

  apply(change: IKeyedChange): void {
    for (const key of change.removed) {
      this._rows.get(key)?.remove();
      this._rows.delete(key);
    }
    const fresh = new Set([...change.inserted, ...change.updated]);
    let previous: HTMLElement | null = null;
    for (const key of change.order) {
      let row = this._rows.get(key);
      if (!row || fresh.has(key)) {
        const rendered = this._render(key);
        row?.replaceWith(rendered);
        row = rendered;
        this._rows.set(key, row);
      }
      const expectedNext: ChildNode | null = previous
        ? previous.nextSibling
        : this.node.firstChild;
      if (expectedNext !== row) {
        this.node.insertBefore(row, expectedNext);
      }
      previous = row;
    }
  }

  private _rows = new Map<string, HTMLElement>();
}
