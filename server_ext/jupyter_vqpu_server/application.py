"""The Jupyter server extension app: configuration, the service object, the routes."""

from __future__ import annotations

import os

from jupyter_server.extension.application import ExtensionApp
from jupyter_server.utils import url_path_join
from traitlets import Callable, Int, List, Unicode, default

from jupyter_vqpu.core.control import Limits
from jupyter_vqpu_server.handlers import ServerApiBase, ServerSocketBase, api_handlers
from jupyter_vqpu_server.metrics import MetricsHandler
from jupyter_vqpu_server.service import VqpuService
from jupyter_vqpu_server.settings import ServiceSettings

_DEFAULTS = Limits()


def hub_api_url() -> str:
    """The hub gateway's API URL when this server runs under a JupyterHub that names one.

    The hub sets ``VQPU_API_URL`` in the spawner's environment (see
    ``jupyter_vqpu_server.hub_config``); it counts only beside ``JUPYTERHUB_API_TOKEN``,
    i.e. in a hub-spawned server, because a plain server writes ``VQPU_API_URL``
    into its own environment for its kernels."""
    from jupyter_vqpu.kernel.http import ENV_API_URL

    if os.environ.get("JUPYTERHUB_API_TOKEN") and os.environ.get(ENV_API_URL):
        return os.environ[ENV_API_URL]
    return ""


class VqpuApp(ServiceSettings, ExtensionApp):
    """Serves the vQPU API at ``{base_url}vqpu/api/`` to authenticated Jupyter users.

    Two modes. Alone (a laptop, a workstation) this server IS the control
    plane's front: it holds the Redis URL. Under a JupyterHub with a vqpu
    gateway (``upstream_url`` set), it holds no Redis credentials at all and
    forwards ``vqpu/api`` to the gateway with the server's own hub token, so
    the lab panel keeps calling ``{base_url}vqpu/api`` and kernels call the
    gateway directly with ``$JUPYTERHUB_API_TOKEN``."""

    name = "vqpu"
    load_other_extensions = True

    redis_url = Unicode(
        "",
        config=True,
        help="Redis URL of the control plane. Empty: $VQPU_REDIS_URL, else the embedded default.",
    )
    upstream_url = Unicode(
        "",
        config=True,
        help="The hub gateway's API URL (e.g. http://127.0.0.1:10101/services/vqpu/api/). When set, this server "
        "opens no Redis connection and forwards vqpu/api there. Default: $VQPU_API_URL in a hub-spawned server.",
    )
    upstream_token = Unicode(
        "",
        config=True,
        help="Token for the gateway (default: $JUPYTERHUB_API_TOKEN, the server's own hub token).",
    )

    @default("upstream_url")
    def _upstream_from_env(self) -> str:
        return hub_api_url()

    @default("upstream_token")
    def _upstream_token_from_env(self) -> str:
        return os.environ.get("JUPYTERHUB_API_TOKEN", "")

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
        """Build the one VqpuService every handler shares (or, under a hub gateway, none)."""
        redis_url, loader_url = self._take_redis_credentials()
        api_base = url_path_join(self.serverapp.base_url, "vqpu/api")
        if self.upstream_url:
            self.service = None
            self.settings.update(vqpu_upstream=(self.upstream_url.rstrip("/") + "/", self.upstream_token),
                                 vqpu_api_base=api_base)
            self.log.info("vqpu: forwarding vqpu/api to the hub gateway at %s (no Redis here)", self.upstream_url)
            return
        limits = Limits(
            max_shots=self.max_shots,
            max_qubits=self.max_qubits,
            max_circuit_bytes=self.max_circuit_bytes,
            max_queued_per_owner=self.max_queued_per_owner,
        )
        self.service = VqpuService(
            redis_url,
            durability=self.durability(),
            parser=self.parser_pool(),
            script_loader_url=loader_url,
            devices=self.devices,
            limits=limits,
            max_workers=self.worker_threads,
            events_block_ms=self.events_block_ms,
        )
        self.service.warm_up()
        self.settings.update(vqpu_service=self.service, vqpu_devices_interval=self.devices_interval,
                             vqpu_max_request_bytes=self.max_request_bytes,
                             vqpu_api_base=api_base,
                             vqpu_metrics_token=self.metrics_token, vqpu_metrics_group_of=self.metrics_group_of)
        self._hand_api_to_kernels()

    def _take_redis_credentials(self) -> tuple[str, str]:
        """This server's Redis URLs, taken OUT of its environment before any kernel or terminal starts.

        Kernels and terminals inherit ``os.environ``; a ``VQPU_REDIS_URL`` left there
        would hand every notebook the control plane's password (and the transport rule
        would even prefer it to the API). They get the API URL and a token instead
        (``_hand_api_to_kernels``). Same-uid processes can still read this server's
        ``/proc/PID/environ`` and its config files: see docs/operations.md."""
        from jupyter_vqpu.core.connection import ENV_LOADER_URL, ENV_URL

        env_url = os.environ.pop(ENV_URL, "")
        env_loader = os.environ.pop(ENV_LOADER_URL, "")
        return self.redis_url or env_url, self.script_loader_url or env_loader

    def _hand_api_to_kernels(self) -> None:
        """Kernels this server starts inherit its environment: give them the API URL and a token.

        That is how ``%%vqpu`` finds the control plane without Redis credentials.
        An API URL the environment already names (a hub service) is left alone."""
        from jupyter_vqpu.kernel.http import ENV_API_TOKEN, ENV_API_URL

        if os.environ.get(ENV_API_URL):
            return
        url = self.serverapp.connection_url.rstrip("/") + "/vqpu/api/"
        os.environ[ENV_API_URL] = url
        token = getattr(self.serverapp.identity_provider, "token", "") or ""
        if token:
            os.environ[ENV_API_TOKEN] = token

    def initialize_handlers(self) -> None:
        if self.upstream_url:
            from jupyter_vqpu_server.forward import forward_handlers

            self.handlers.extend(forward_handlers("/vqpu/api"))
            return
        self.handlers.extend(api_handlers("/vqpu/api", ServerApiBase, ServerSocketBase))
        self.handlers.append((r"/vqpu/metrics", MetricsHandler))

    async def stop_extension(self) -> None:
        """Stop the event pump and the worker threads with the server."""
        service = getattr(self, "service", None)
        if service is not None:
            await service.close()
