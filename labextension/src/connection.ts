/**
 * What the live dot says: both links have to work for the panel to be live,
 * the browser's to the Jupyter server (the event stream's mode) and the
 * service's to the control plane (what the API reports). Green only when both
 * do; the control plane being unreachable wins over a working socket, because
 * then nothing the panel shows can change.
 */
import type { ConnectionMode } from './events';
import type { IControlPlane } from './panelModel';

/** The dot's state (`data-mode` of `.jp-vqpu-connection`). */
export type LiveState = ConnectionMode | 'unreachable';

export interface ILiveStatus {
  readonly mode: LiveState;
  readonly label: string;
  readonly title: string;
}

const STREAM: Record<ConnectionMode, ILiveStatus> = {
  connecting: {
    mode: 'connecting',
    label: 'connecting…',
    title: 'Connecting to the vQPU service'
  },
  live: { mode: 'live', label: 'live', title: 'Live: updates arrive as they happen' },
  polling: {
    mode: 'polling',
    label: 'live (polling)',
    title: 'Live, by asking the server every few seconds (the WebSocket is unavailable)'
  },
  offline: {
    mode: 'offline',
    label: 'offline',
    title: 'Cannot reach the Jupyter server; retrying'
  }
};

/** The dot for this stream mode and control-plane state. */
export function liveStatus(
  stream: ConnectionMode,
  controlPlane: IControlPlane | null
): ILiveStatus {
  const state = controlPlane?.state;
  if (stream !== 'offline' && (state === 'unreachable' || state === 'not_running')) {
    const why = [controlPlane?.message, controlPlane?.hint].filter(Boolean).join(' — ');
    return {
      mode: 'unreachable',
      label: state === 'not_running' ? 'not running' : 'control plane unreachable',
      title: why || 'The vQPU service cannot reach its control plane; retrying'
    };
  }
  if ((stream === 'live' || stream === 'polling') && state !== 'connected') {
    // The socket is up but nothing has said yet whether the control plane is.
    return STREAM.connecting;
  }
  return STREAM[stream];
}
