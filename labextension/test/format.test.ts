import { describe, expect, it } from 'vitest';

import { displayTaskId, el, firstLine, humanizeSeconds, shortId } from '../src/format';

describe('humanizeSeconds', () => {
  it.each([
    [null, '–'],
    [undefined, '–'],
    [Number.NaN, '–'],
    [Number.POSITIVE_INFINITY, '–'],
    [-3, 'just now'],
    [4.9, 'just now'],
    [5, '5 s'],
    [59, '59 s'],
    [60, '1 min'],
    [3599, '59 min'],
    [3600, '1 h'],
    [3600 + 5 * 60, '1 h 5 min'],
    [86_399, '23 h 59 min'],
    [86_400, '1 d'],
    [2 * 86_400 + 4 * 3600 + 59, '2 d 4 h']
  ])('%s s -> %s', (s, text) => {
    expect(humanizeSeconds(s)).toBe(text);
  });
});

describe('shortId', () => {
  it('keeps the first n characters, and a dash for none', () => {
    expect(shortId('0123456789abcdef')).toBe('0123456789ab');
    expect(shortId('abc')).toBe('abc');
    expect(shortId('0123456789', 4)).toBe('0123');
    expect(shortId(null)).toBe('–');
    expect(shortId('')).toBe('–');
  });
});

describe('displayTaskId', () => {
  it('drops the device and keeps the distinctive tail', () => {
    expect(displayTaskId('fez.ABCDEFGHIJKLMNOP')).toBe('…IJKLMNOP');
    expect(displayTaskId('fez.ABCD')).toBe('ABCD');
    expect(displayTaskId('noprefix0123456789')).toBe('…23456789');
    expect(displayTaskId('fez.ABCDEFGHIJ', 4)).toBe('…GHIJ');
  });
});

describe('firstLine', () => {
  it('is the first non-blank line, trimmed to max with an ellipsis', () => {
    expect(firstLine('\n  \n  boom: it failed  \nTraceback...')).toBe('boom: it failed');
    expect(firstLine(null)).toBe('');
    expect(firstLine('   \n  ')).toBe('');
    const long = firstLine('x'.repeat(500), 10);
    expect(long).toBe('xxxxxxxxx…');
    expect(long.length).toBe(10);
  });
});

describe('el', () => {
  it('creates an element with a class and text (as text, never as HTML)', () => {
    const node = el('span', 'a b', '<b>not bold</b>');
    expect(node.tagName).toBe('SPAN');
    expect(node.className).toBe('a b');
    expect(node.textContent).toBe('<b>not bold</b>');
    expect(node.children.length).toBe(0);
    const bare = el('li');
    expect(bare.className).toBe('');
    expect(bare.textContent).toBe('');
  });
});
