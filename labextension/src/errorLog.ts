/**
 * The panel's current errors, one per source (device list, task list, one
 * task, a cancel, the event stream), so that a source that works again clears
 * its own error and only its own. Pure data; errorView.ts renders it.
 */
import { VqpuApiError } from './apiError';

/** One error as shown: what failed and why, then what to do. */
export interface IShownError {
  readonly text: string;
  readonly hint: string | null;
}

interface IEntry {
  prefix: string;
  message: string;
  hint: string | null;
}

export class ErrorLog {
  /**
   * Record the error of source `key`, replacing its previous one; `prefix`
   * says what failed (`Cancel …: `).
   */
  set(key: string, err: unknown, prefix = ''): void {
    const e = VqpuApiError.from(err);
    this._errors.set(key, { prefix, message: e.message, hint: e.hint });
  }

  /** Forget the error of source `key`; whether there was one. */
  clear(key: string): boolean {
    return this._errors.delete(key);
  }

  /**
   * What to show, oldest first. The same message and hint from several
   * sources (the server is down: every request says so) is shown once.
   */
  shown(): IShownError[] {
    const seen = new Set<string>();
    const out: IShownError[] = [];
    for (const { prefix, message, hint } of this._errors.values()) {
      const sig = `${message}\n${hint ?? ''}`;
      if (!seen.has(sig)) {
        seen.add(sig);
        out.push({ text: prefix + message, hint });
      }
    }
    return out;
  }

  private _errors = new Map<string, IEntry>();
}
