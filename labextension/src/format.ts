/** Small, dependency-free formatting helpers for the vQPU panel. */

/** "just now", "42 s", "5 min", "3 h 5 min", "2 d 4 h". */
export function humanizeSeconds(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined || !isFinite(seconds)) {
    return '–';
  }
  const s = Math.max(0, Math.floor(seconds));
  if (s < 5) {
    return 'just now';
  }
  if (s < 60) {
    return `${s} s`;
  }
  const m = Math.floor(s / 60);
  if (m < 60) {
    return `${m} min`;
  }
  const h = Math.floor(m / 60);
  if (h < 24) {
    const rm = m % 60;
    return rm ? `${h} h ${rm} min` : `${h} h`;
  }
  const d = Math.floor(h / 24);
  const rh = h % 24;
  return rh ? `${d} d ${rh} h` : `${d} d`;
}

/** The first 12 characters of a snapshot id (content hash). */
export function shortId(id: string | null | undefined, n = 12): string {
  if (!id) {
    return '–';
  }
  return id.length > n ? id.slice(0, n) : id;
}

/**
 * A short label for a task id. Ids look like `fez.<16 base32 chars>` whose
 * leading characters are a timestamp (alike for tasks submitted together),
 * so the label is the device-less tail: `…` + the last `n` characters.
 */
export function displayTaskId(id: string, n = 8): string {
  const dot = id.indexOf('.');
  const rest = dot >= 0 ? id.slice(dot + 1) : id;
  return rest.length > n ? '…' + rest.slice(-n) : rest;
}

/** The first non-empty line of an error text, trimmed to `max` characters. */
export function firstLine(text: string | null | undefined, max = 200): string {
  if (!text) {
    return '';
  }
  const line =
    String(text)
      .split('\n')
      .map(l => l.trim())
      .find(l => l.length > 0) ?? '';
  return line.length > max ? line.slice(0, max - 1) + '…' : line;
}

/** Create an element with a class name and optional text. */
export function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  className?: string,
  text?: string
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  if (className) {
    node.className = className;
  }
  if (text !== undefined) {
    node.textContent = text;
  }
  return node;
}
