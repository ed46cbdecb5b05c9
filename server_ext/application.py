"""The Jupyter server extension app: configuration, the service object, the routes."""

from __future__ import annotations

import os

from jupyter_server.extension.application import ExtensionApp
from traitlets import Callable, Int, List, Unicode, default

from jupyter_vqpu.control import Limits

from .handlers import (
    DevicesHandler,
    EventsPollHandler,
    EventsSocketHandler,
    SnapshotHandler,
    TaskHandler,
    TasksHandler,
)
from .metrics import MetricsHandler
from .service import VqpuService

_DEFAULTS = Limits()
_TASK_ID = r"(?P<task_id>[^/]+)"
_DEVICE = r"(?P<device>[^/]+)"


class VqpuApp(ExtensionApp):
    """Serves the vQPU API at ``{base_url}vqpu/api/`` to authenticated Jupyter users."""

    name = "vqpu"
    load_other_extensions = True

    redis_url = Unicode(
        "",
        config=True,
        help="Redis URL of the control plane. Empty: $VQPU_REDIS_URL, else the embedded default.",
    )
    devices = List(
        Unicode(),
        default_value=[],
        config=True,
        help="Device names this server shows and accepts work for. Empty: every registered device.",
    )
    max_shots = Int(_DEFAULTS.max_shots, config=True, help="Most shots one task may ask for.")
    max_qubits = Int(_DEFAULTS.max_qubits, config=True, help="Most active qubits one simulation may use.")
    max_circuit_bytes = Int(_DEFAULTS.max_circuit_bytes, config=True, help="Largest circuit text accepted.")
    max_queued_per_owner = Int(
        _DEFAULTS.max_queued_per_owner, config=True, help="Most queued tasks per user and device (0: no limit)."
    )
    events_block_ms = Int(
        5000, config=True, help="How long one blocking read of the events streams waits (ms); bounds shutdown time."
    )
    devices_interval = Int(
        10, config=True, help="Seconds between device-status messages pushed on the events WebSocket."
    )
    worker_threads = Int(
        8, config=True, help="Threads for blocking Redis calls, so that they never run on the server's event loop."
    )
    metrics_token = Unicode(
        "",
        config=True,
        help="Bearer token that lets Prometheus scrape {base_url}vqpu/metrics without a user login "
        "(default: $VQPU_METRICS_TOKEN; empty: only signed-in administrators may read the metrics).",
    )
    metrics_group_of = Callable(
        None,
        allow_none=True,
        config=True,
        help="owner -> group name for the vqpu_queue_depth_by_group metric (default: one group, 'all').",
    )

    @default("metrics_token")
    def _metrics_token_from_env(self) -> str:
        return os.environ.get("VQPU_METRICS_TOKEN", "")

    def initialize_settings(self) -> None:
        """Build the one VqpuService every handler shares."""
        limits = Limits(
            max_shots=self.max_shots,
            max_qubits=self.max_qubits,
            max_circuit_bytes=self.max_circuit_bytes,
            max_queued_per_owner=self.max_queued_per_owner,
        )
        self.service = VqpuService(
            self.redis_url,
            devices=self.devices,
            limits=limits,
            max_workers=self.worker_threads,
            events_block_ms=self.events_block_ms,
        )
        self.service.warm_up()
        self.settings.update(vqpu_service=self.service, vqpu_devices_interval=self.devices_interval,
                             vqpu_metrics_token=self.metrics_token, vqpu_metrics_group_of=self.metrics_group_of)
        self._hand_api_to_kernels()

    def _hand_api_to_kernels(self) -> None:
        """Kernels this server starts inherit its environment: give them the API URL and a token.

        That is how ``%%vqpu`` finds the control plane without Redis credentials.
        An API URL the environment already names (a hub service) is left alone."""
        from jupyter_vqpu.http import ENV_API_TOKEN, ENV_API_URL

        if os.environ.get(ENV_API_URL):
            return
        url = self.serverapp.connection_url.rstrip("/") + "/vqpu/api/"
        os.environ[ENV_API_URL] = url
        token = getattr(self.serverapp.identity_provider, "token", "") or ""
        if token:
            os.environ[ENV_API_TOKEN] = token

    def initialize_handlers(self) -> None:
        api = "vqpu/api"
        self.handlers.extend(
            [
                (rf"/{api}/devices", DevicesHandler),
                (rf"/{api}/devices/{_DEVICE}/snapshot", SnapshotHandler),
                (rf"/{api}/devices/{_DEVICE}/snapshot/(?P<snapshot_id>[^/]+)", SnapshotHandler),
                (rf"/{api}/tasks", TasksHandler),
                (rf"/{api}/tasks/{_TASK_ID}", TaskHandler),
                (rf"/{api}/events", EventsSocketHandler),
                (rf"/{api}/events/poll", EventsPollHandler),
                (r"/vqpu/metrics", MetricsHandler),
            ]
        )

    async def stop_extension(self) -> None:
        """Stop the event pump and the worker threads with the server."""
        service = getattr(self, "service", None)
        if service is not None:
            await service.close()
