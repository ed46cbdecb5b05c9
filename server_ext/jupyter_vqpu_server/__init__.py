"""The jupyter-vqpu Jupyter server extension (the HTTP/WebSocket API under ``vqpu/api``)."""

from __future__ import annotations

from typing import Any


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    """Where jupyter_server finds the extension; imported lazily so listing extensions stays cheap."""
    from jupyter_vqpu_server.application import VqpuApp

    return [{"module": "jupyter_vqpu_server", "app": VqpuApp}]
