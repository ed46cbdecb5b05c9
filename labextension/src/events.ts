/**
 * Live events: a WebSocket on `vqpu/api/events`, falling back to long-polling
 * `vqpu/api/events/poll` when the socket cannot be used.
 */
import { ServerConnection } from '@jupyterlab/services';

import {
  type IEventMessage,
  VqpuApiError,
  eventsWebSocketUrl,
  pollEvents
} from './api';

export type ConnectionMode = 'connecting' | 'live' | 'polling' | 'offline';

export interface IEventStreamOptions {
  settings?: ServerConnection.ISettings;
  /** Called for every message (WebSocket or long-poll). */
  onMessage: (msg: IEventMessage) => void;
  /** Called when the transport changes. */
  onMode?: (mode: ConnectionMode, error?: VqpuApiError | null) => void;
  /** Long-poll timeout in seconds (server side). */
  pollTimeoutS?: number;
}

/** WebSocket failures in a row (without ever opening) before long-polling. */
const WS_FAILURES_BEFORE_POLL = 2;
/** While long-polling, try the WebSocket again this often (ms). */
const WS_RETRY_WHILE_POLLING_MS = 60_000;

export class EventStream {
  constructor(options: IEventStreamOptions) {
    this._settings = options.settings ?? ServerConnection.makeSettings();
    this._onMessage = options.onMessage;
    this._onMode = options.onMode ?? (() => undefined);
    this._pollTimeoutS = options.pollTimeoutS ?? 20;
  }

  get mode(): ConnectionMode {
    return this._mode;
  }

  /** The opaque cursor from the last long-poll answer (null before one). */
  get cursor(): string | null {
    return this._cursor;
  }

  start(): void {
    if (this._disposed || this._started) {
      return;
    }
    this._started = true;
    this._connectSocket();
  }

  dispose(): void {
    this._disposed = true;
    this._clearTimer();
    if (this._retryTimer !== null) {
      window.clearTimeout(this._retryTimer);
      this._retryTimer = null;
    }
    this._pollAbort?.abort();
    this._closeSocket();
  }

  private _setMode(mode: ConnectionMode, error: VqpuApiError | null = null) {
    this._mode = mode;
    this._onMode(mode, error);
  }

  private _deliver(msg: IEventMessage) {
    // Note: an event's `id` is a per-device stream id, not a poll cursor;
    // the cursor only ever comes from the poll response.
    try {
      this._onMessage(msg);
    } catch (err) {
      console.error('jupyter-vqpu: error handling event', err, msg);
    }
  }

  private _connectSocket() {
    if (this._disposed) {
      return;
    }
    let opened = false;
    let ws: WebSocket;
    try {
      const WS = this._settings.WebSocket ?? WebSocket;
      ws = new WS(eventsWebSocketUrl(this._settings));
    } catch (err) {
      console.warn('jupyter-vqpu: cannot open events WebSocket', err);
      this._socketFailed(false);
      return;
    }
    this._ws = ws;
    if (this._mode !== 'polling') {
      this._setMode('connecting');
    }
    ws.onopen = () => {
      opened = true;
      this._wsFailures = 0;
      // The socket works: stop long-polling.
      this._polling = false;
      this._pollAbort?.abort();
      this._setMode('live');
    };
    ws.onmessage = (ev: MessageEvent) => {
      let msg: IEventMessage;
      try {
        msg = JSON.parse(String(ev.data));
      } catch {
        return;
      }
      this._deliver(msg);
    };
    ws.onerror = () => {
      // onclose follows; handled there.
    };
    ws.onclose = () => {
      if (this._ws === ws) {
        this._ws = null;
      }
      if (!this._disposed) {
        this._socketFailed(opened);
      }
    };
  }

  private _closeSocket() {
    const ws = this._ws;
    this._ws = null;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onerror = ws.onclose = null;
      try {
        ws.close();
      } catch {
        // ignore
      }
    }
  }

  private _socketFailed(hadOpened: boolean) {
    if (this._disposed) {
      return;
    }
    if (hadOpened) {
      // A working socket dropped: reconnect quickly; the caller refreshes
      // everything on 'connecting' so nothing is missed in between.
      this._wsFailures = 0;
      this._setMode('connecting');
      this._retryTimer = window.setTimeout(() => {
        this._retryTimer = null;
        this._connectSocket();
      }, 1000);
      return;
    }
    this._wsFailures += 1;
    if (this._wsFailures < WS_FAILURES_BEFORE_POLL && !this._polling) {
      this._retryTimer = window.setTimeout(() => {
        this._retryTimer = null;
        this._connectSocket();
      }, 1500);
      return;
    }
    // Fall back to long-polling; retry the socket now and then.
    if (!this._polling) {
      void this._pollLoop();
    }
    this._retryTimer = window.setTimeout(() => {
      this._retryTimer = null;
      this._connectSocket();
    }, WS_RETRY_WHILE_POLLING_MS);
  }

  private async _pollLoop(): Promise<void> {
    this._polling = true;
    this._setMode('polling');
    let backoffMs = 2000;
    while (this._polling && !this._disposed) {
      const abort = new AbortController();
      this._pollAbort = abort;
      try {
        const res = await pollEvents(
          this._cursor,
          this._pollTimeoutS,
          this._settings,
          abort.signal
        );
        if (!this._polling || this._disposed) {
          break;
        }
        if (this._mode !== 'polling') {
          this._setMode('polling');
        }
        backoffMs = 2000;
        if (res.devices) {
          this._deliver({ type: 'devices', devices: res.devices });
        }
        for (const msg of res.events ?? []) {
          this._deliver(msg);
        }
        if (res.cursor) {
          this._cursor = res.cursor;
        }
      } catch (err) {
        if (!this._polling || this._disposed) {
          break;
        }
        this._setMode('offline', VqpuApiError.from(err));
        await this._sleep(backoffMs);
        backoffMs = Math.min(backoffMs * 2, 30_000);
      }
    }
    this._pollAbort = null;
  }

  private _sleep(ms: number): Promise<void> {
    return new Promise(resolve => {
      this._clearTimer();
      this._timer = window.setTimeout(() => {
        this._timer = null;
        resolve();
      }, ms);
    });
  }

  private _clearTimer() {
    if (this._timer !== null) {
      window.clearTimeout(this._timer);
      this._timer = null;
    }
  }

  private _settings: ServerConnection.ISettings;
  private _onMessage: (msg: IEventMessage) => void;
  private _onMode: (mode: ConnectionMode, error?: VqpuApiError | null) => void;
  private _pollTimeoutS: number;
  private _mode: ConnectionMode = 'connecting';
  private _cursor: string | null = null;
  private _ws: WebSocket | null = null;
  private _wsFailures = 0;
  private _polling = false;
  private _pollAbort: AbortController | null = null;
  private _timer: number | null = null;
  private _retryTimer: number | null = null;
  private _started = false;
  private _disposed = false;
}
