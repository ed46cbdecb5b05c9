"""jupyter-vqpu: a device-faithful virtual QPU on a batch-scheduled cluster, inside Jupyter.

Importing this package is cheap and pulls in neither Jupyter nor Redis: the
job runner imports parts of it inside hermetic jobs.
"""

from __future__ import annotations

__version__ = "0.1.0"


def __getattr__(name: str):
    # Lazy, so that `import jupyter_vqpu.snapshot` in a job stays light.
    if name == "Client":
        from .client import Client

        return Client
    raise AttributeError(name)
