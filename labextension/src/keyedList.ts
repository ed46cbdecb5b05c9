/**
 * A keyed, ordered collection and the ONE keyed update the panel's lists use.
 *
 * Devices (keyed by name) and tasks (keyed by id) are both shown as lists
 * whose rows must stay the same DOM nodes while their data do not change: the
 * browser tests (and a user's hover or focus) hold on to them. So every update
 * here reports exactly which keys need a freshly rendered row (new, or their
 * signature changed), which are gone, and the display order; the view
 * (listView.ts) applies that and nothing else. Pure data, no DOM.
 */

export interface IKeyedListOptions<T> {
  /** The row key (device name, task id). */
  key: (item: T) => string;
  /**
   * What the row shows, as a string: equal signatures keep the row as is.
   * Leave out what a view updates in place (ages tick without a re-render).
   */
  signature: (item: T) => string;
  /** Display order (a total order: break ties on the key). */
  compare: (a: T, b: T) => number;
  /** Show at most this many (the first in display order, after `offset`). */
  limit?: number;
}

/**
 * Which of the items are shown: those `filter` keeps, in display order, from
 * the `offset`-th on, at most `limit` of them (a page).
 */
export interface IKeyedWindow<T> {
  filter?: ((item: T) => boolean) | null;
  offset?: number;
}

/** What one update changed, for the view to apply. */
export interface IKeyedChange {
  /** The keys shown, in display order. */
  readonly order: readonly string[];
  /** Keys shown now that were not before. */
  readonly inserted: readonly string[];
  /** Keys still shown whose row must be rendered again. */
  readonly updated: readonly string[];
  /** Keys shown before that are not any more (gone, or past the limit). */
  readonly removed: readonly string[];
}

export class KeyedList<T> {
  constructor(options: IKeyedListOptions<T>) {
    this._options = options;
  }

  /** Whether a full list has been set at least once. */
  get loaded(): boolean {
    return this._loaded;
  }

  /** Number of items held (shown or not). */
  get size(): number {
    return this._items.size;
  }

  get(key: string): T | undefined {
    return this._items.get(key);
  }

  has(key: string): boolean {
    return this._items.has(key);
  }

  /** How many items the filter keeps (on every page, not only the shown one). */
  get matching(): number {
    return this._matching;
  }

  /** Every item held (shown or not), in no particular order. */
  values(): T[] {
    return [...this._items.values()];
  }

  /** The shown items, in display order. */
  shown(): T[] {
    return this._order.map(k => this._items.get(k) as T);
  }

  /** Replace everything (a full reload). */
  replaceAll(items: Iterable<T>): IKeyedChange {
    this._items.clear();
    for (const item of items) {
      this._items.set(this._options.key(item), item);
    }
    this._loaded = true;
    return this._update();
  }

  /** Insert an item or replace the one with its key. */
  upsert(item: T): IKeyedChange {
    this._items.set(this._options.key(item), item);
    return this._update();
  }

  /** Drop the item with this key (a no-op change if there is none). */
  remove(key: string): IKeyedChange {
    this._items.delete(key);
    return this._update();
  }

  /** Show another window of the items (a filter, a page); keeps what it does not name. */
  setWindow(window: IKeyedWindow<T>): IKeyedChange {
    this._window = { ...this._window, ...window };
    return this._update();
  }

  /**
   * Render this key's row again although its data did not change (to undo
   * what the view changed in place, like a "Cancelling…" button).
   */
  invalidate(key: string): IKeyedChange {
    this._dirty.add(key);
    return this._update();
  }

  private _update(): IKeyedChange {
    const { key, signature, compare, limit } = this._options;
    const { filter, offset = 0 } = this._window;
    const all = [...this._items.values()];
    const sorted = (filter ? all.filter(filter) : all).sort(compare);
    this._matching = sorted.length;
    const visible = sorted.slice(
      offset,
      limit === undefined ? undefined : offset + limit
    );
    const order: string[] = [];
    const inserted: string[] = [];
    const updated: string[] = [];
    const next = new Map<string, string>();
    for (const item of visible) {
      const k = key(item);
      const sig = signature(item);
      order.push(k);
      next.set(k, sig);
      const before = this._shown.get(k);
      if (before === undefined) {
        inserted.push(k);
      } else if (before !== sig || this._dirty.has(k)) {
        updated.push(k);
      }
    }
    const removed = [...this._shown.keys()].filter(k => !next.has(k));
    this._shown = next;
    this._order = order;
    this._dirty.clear();
    return { order, inserted, updated, removed };
  }

  private _options: IKeyedListOptions<T>;
  private _items = new Map<string, T>();
  /** key -> signature of what the view last rendered. */
  private _shown = new Map<string, string>();
  private _order: string[] = [];
  /** Shown keys to render again on the next update whatever their data. */
  private _dirty = new Set<string>();
  private _loaded = false;
  private _window: IKeyedWindow<T> = {};
  private _matching = 0;
}
