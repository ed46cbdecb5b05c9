import { describe, expect, it } from 'vitest';

import { KeyedList } from '../src/keyedList';

interface IItem {
  id: string;
  rank: number;
  label: string;
}

function list(limit?: number): KeyedList<IItem> {
  return new KeyedList<IItem>({
    key: i => i.id,
    signature: i => JSON.stringify([i.rank, i.label]),
    compare: (a, b) => a.rank - b.rank || a.id.localeCompare(b.id),
    limit
  });
}

const item = (id: string, rank: number, label = id): IItem => ({
  id,
  rank,
  label
});

describe('KeyedList', () => {
  it('inserts new keys in display order', () => {
    const l = list();
    expect(l.loaded).toBe(false);
    const c = l.replaceAll([item('b', 2), item('a', 1), item('c', 3)]);
    expect(l.loaded).toBe(true);
    expect(c.order).toEqual(['a', 'b', 'c']);
    expect(c.inserted).toEqual(['a', 'b', 'c']);
    expect(c.updated).toEqual([]);
    expect(c.removed).toEqual([]);
    expect(l.shown().map(i => i.id)).toEqual(['a', 'b', 'c']);
  });

  it('updates in place only the keys whose signature changed', () => {
    const l = list();
    l.replaceAll([item('a', 1), item('b', 2)]);
    const same = l.replaceAll([item('a', 1), item('b', 2)]);
    expect(same.inserted).toEqual([]);
    expect(same.updated).toEqual([]);
    const c = l.upsert(item('b', 2, 'renamed'));
    expect(c.inserted).toEqual([]);
    expect(c.updated).toEqual(['b']);
    expect(c.order).toEqual(['a', 'b']);
    expect(l.get('b')?.label).toBe('renamed');
  });

  it('reports removed keys, and removing an unknown key changes nothing', () => {
    const l = list();
    l.replaceAll([item('a', 1), item('b', 2), item('c', 3)]);
    const full = l.replaceAll([item('a', 1), item('c', 3)]);
    expect(full.removed).toEqual(['b']);
    expect(full.order).toEqual(['a', 'c']);
    const one = l.remove('a');
    expect(one.removed).toEqual(['a']);
    expect(l.has('a')).toBe(false);
    const none = l.remove('zzz');
    expect(none).toEqual({ order: ['c'], inserted: [], updated: [], removed: [] });
  });

  it('reorders when the sort key changes, as an update', () => {
    const l = list();
    l.replaceAll([item('a', 1), item('b', 2), item('c', 3)]);
    const c = l.upsert(item('c', 0));
    expect(c.order).toEqual(['c', 'a', 'b']);
    expect(c.updated).toEqual(['c']);
    expect(c.inserted).toEqual([]);
  });

  it('breaks ties on the key, whatever the input order', () => {
    const a = list().replaceAll([item('y', 1), item('x', 1)]);
    const b = list().replaceAll([item('x', 1), item('y', 1)]);
    expect(a.order).toEqual(['x', 'y']);
    expect(b.order).toEqual(['x', 'y']);
  });

  it('shows at most `limit`: what falls off is removed, what comes back is inserted', () => {
    const l = list(2);
    const first = l.replaceAll([item('a', 1), item('b', 2), item('c', 3)]);
    expect(first.order).toEqual(['a', 'b']);
    expect(l.size).toBe(3);
    const pushed = l.upsert(item('z', 0));
    expect(pushed.order).toEqual(['z', 'a']);
    expect(pushed.inserted).toEqual(['z']);
    expect(pushed.removed).toEqual(['b']);
    const back = l.remove('z');
    expect(back.order).toEqual(['a', 'b']);
    expect(back.inserted).toEqual(['b']);
  });

  it('invalidate re-renders a shown row once, with unchanged data', () => {
    const l = list();
    l.replaceAll([item('a', 1), item('b', 2)]);
    const c = l.invalidate('b');
    expect(c.updated).toEqual(['b']);
    expect(c.inserted).toEqual([]);
    expect(l.replaceAll([item('a', 1), item('b', 2)]).updated).toEqual([]);
  });
});
