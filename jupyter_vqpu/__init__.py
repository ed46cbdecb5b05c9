"""jupyter-vqpu: a device-faithful virtual QPU on a batch-scheduled cluster, inside Jupyter.

Importing this package is cheap and pulls in neither Jupyter nor Redis: the
job runner imports parts of it inside hermetic jobs.
"""

from __future__ import annotations

__version__ = "0.1.0"


def load_ipython_extension(ipython) -> None:  # %load_ext jupyter_vqpu
    from jupyter_vqpu.kernel.magic import load_ipython_extension as load

    load(ipython)


def get_backend(device: str = "fez", **kwargs):
    """A Qiskit BackendV2 for a vQPU device (see ``jupyter_vqpu.kernel.backend``)."""
    from jupyter_vqpu.kernel.backend import get_backend as _get

    return _get(device, **kwargs)


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    """The built lab extension (``jlpm build`` writes it to ``jupyter_vqpu/labextension``).

    ``jupyter labextension develop --overwrite .`` in a checkout links it into
    ``share/jupyter/labextensions``, so every later ``jlpm build`` reaches every lab, instead
    of the copy that ``pip install -e .`` made once going stale."""
    return [{"src": "labextension", "dest": "jupyter-vqpu"}]


def __getattr__(name: str):
    # Lazy, so that `import jupyter_vqpu.core.snapshot` in a job stays light.
    if name == "Client":
        from jupyter_vqpu.core.client import Client

        return Client
    raise AttributeError(name)
