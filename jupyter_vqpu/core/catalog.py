"""The built-in devices: real IBM calibrations shipped inside qiskit-ibm-runtime, plus "ideal".

The calibration JSON is read straight from the installed qiskit-ibm-runtime
package: locating it with ``importlib.util.find_spec`` does not import the
package (about a second and a pile of HTTP dependencies), and a control plane
seeding devices needs only the two JSON files, not a fake backend object.
"""

from __future__ import annotations

import importlib.util
import json
from functools import lru_cache
from importlib import metadata
from pathlib import Path

from jupyter_vqpu.core.errors import UnknownDevice
from jupyter_vqpu.core.snapshot import ideal_snapshot, snapshot_from_ibm

BUILTIN = ("fez", "torino", "marrakesh", "kingston", "ideal")

_IBM = ("fez", "torino", "marrakesh", "kingston")


def _hint() -> str:
    return "known devices: " + ", ".join(BUILTIN)


@lru_cache(maxsize=1)
def _runtime_dir() -> tuple[Path, str]:
    spec = importlib.util.find_spec("qiskit_ibm_runtime")
    if spec is None or not spec.submodule_search_locations:
        raise UnknownDevice("qiskit-ibm-runtime is not installed, so no IBM calibration is available",
                            "pip install qiskit-ibm-runtime, or use the 'ideal' device")
    try:
        version = metadata.version("qiskit-ibm-runtime")
    except metadata.PackageNotFoundError:
        version = "unknown"
    return Path(next(iter(spec.submodule_search_locations))), version


def calibration_paths(name: str) -> tuple[Path, Path]:
    """Where the installed qiskit-ibm-runtime keeps this device's conf and props JSON."""
    if name not in _IBM:
        raise UnknownDevice(f"no built-in IBM calibration for device {name!r}", _hint())
    root, version = _runtime_dir()
    folder = root / "fake_provider" / "backends" / name
    conf, props = folder / f"conf_{name}.json", folder / f"props_{name}.json"
    if not conf.is_file() or not props.is_file():
        raise UnknownDevice(f"qiskit-ibm-runtime {version} ships no calibration for {name!r} (looked in {folder})",
                            "upgrade qiskit-ibm-runtime or publish the device with `vqpu device update`")
    return conf, props


@lru_cache(maxsize=8)
def _raw(name: str) -> tuple[bytes, bytes]:
    conf, props = calibration_paths(name)
    return conf.read_bytes(), props.read_bytes()


def builtin_calibration(name: str) -> tuple[dict, dict]:
    """The IBM (configuration, properties) JSON of a built-in device, freshly parsed (safe to mutate)."""
    conf, props = _raw(name)
    return json.loads(conf), json.loads(props)


def builtin_snapshot(name: str, *, version: int = 1, created_at: str | None = None) -> dict:
    """A snapshot of a built-in device; raises UnknownDevice listing the known ones."""
    if name == "ideal":
        return ideal_snapshot(version=version, created_at=created_at)
    if name not in _IBM:
        raise UnknownDevice(f"unknown device {name!r}", _hint())
    conf, props = builtin_calibration(name)
    _, runtime_version = _runtime_dir()
    fake = "Fake" + name.capitalize()
    source = (f"IBM {name.capitalize()} calibration as shipped in qiskit-ibm-runtime {runtime_version} "
              f"({fake}, props_{name}.json)")
    return snapshot_from_ibm(conf, props, device=name, version=version, source=source, created_at=created_at)
