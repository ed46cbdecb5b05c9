"""The immutable device snapshot: the contract between control plane and job.

A snapshot is one JSON document (topology, native gates, calibration) stored as
canonical bytes and named by the sha256 of those bytes. The control plane binds
a task to a snapshot id when it claims it; the runner re-hashes the bytes it was
given before trusting them. Content addressing is what makes "the same task,
replayed later, sees the same device" checkable rather than hoped for.

Importing this module does not import Qiskit: loading, hashing and validating
snapshots is plain JSON. Qiskit is imported only to build one from IBM JSON (to
know which instruction names Qiskit defines) and by ``build_target``.

Schema ``vqpu.snapshot/1`` (times ISO-8601 UTC, durations in seconds,
frequencies in Hz, probabilities in [0, 1], null where unknown)::

    schema, device, version, created_at, source, backend_name, calibration_date,
    num_qubits, basis_gates (sorted; includes measure/reset/delay and the
    control-flow instructions where the backend supports them),
    coupling_map ([[a, b], ...] sorted, or null for all-to-all), dt,
    qubits  [{t1, t2, frequency, readout_error, prob_meas1_prep0,
              prob_meas0_prep1, readout_length}, ...]   one per qubit,
    gates   [{gate, qubits, error, duration}, ...]      sorted by (gate, qubits),
    faulty_qubits [q, ...]   (optional; qubits IBM marked non-operational),
    noise   true | false
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jupyter_vqpu.core.cache import Memo, cache_bytes
from jupyter_vqpu.core.errors import SnapshotError

if TYPE_CHECKING:  # pragma: no cover
    from qiskit.transpiler import Target

SCHEMA = "vqpu.snapshot/1"

QUBIT_FIELDS = ("t1", "t2", "frequency", "readout_error", "prob_meas1_prep0", "prob_meas0_prep1", "readout_length")

# IBM BackendProperties names -> our qubit fields.
_IBM_QUBIT_NAMES = {
    "T1": "t1",
    "T2": "t2",
    "frequency": "frequency",
    "readout_error": "readout_error",
    "prob_meas1_prep0": "prob_meas1_prep0",
    "prob_meas0_prep1": "prob_meas0_prep1",
    "readout_length": "readout_length",
}
_PROBABILITIES = ("readout_error", "prob_meas1_prep0", "prob_meas0_prep1")
_POSITIVE = ("t1", "t2", "frequency")

NON_UNITARY = ("measure", "reset", "delay")
CONTROL_FLOW = ("if_else", "for_loop", "while_loop", "switch_case")
# Instructions a snapshot may name besides Qiskit's standard gates.
_EXTRA_KNOWN = frozenset(NON_UNITARY + CONTROL_FLOW + ("barrier",))

# The noise-free device offers every standard gate Aer simulates natively, so
# that a user's circuit reaches the simulator with as little rewriting as possible.
IDEAL_BASIS = tuple(sorted((
    "barrier", "ccx", "ccz", "cp", "crx", "cry", "crz", "cswap", "csx", "cu", "cu1", "cu3", "cx", "cy", "cz",
    "delay", "ecr", "for_loop", "h", "id", "if_else", "measure", "p", "r", "reset", "rx", "rxx", "ry", "ryy",
    "rz", "rzx", "rzz", "s", "sdg", "swap", "switch_case", "sx", "sxdg", "t", "tdg", "u", "u1", "u2", "u3",
    "while_loop", "x", "y", "z",
)))

_SI_PREFIX = {"f": -15, "p": -12, "n": -9, "u": -6, "µ": -6, "m": -3, "k": 3, "M": 6, "G": 9, "T": 12}
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


# ------------------------------------------------------------------ identity


def canonical_bytes(doc: dict) -> bytes:
    """The one byte string a snapshot document hashes to; any other spelling is not the snapshot."""
    try:
        return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()
    except ValueError as exc:  # NaN / inf
        raise SnapshotError(f"snapshot is not valid JSON: {exc}", "calibration values must be finite numbers") from None
    except TypeError as exc:
        raise SnapshotError(f"snapshot is not plain JSON: {exc}", "use only dicts, lists, str, numbers, bools, null") from None


def snapshot_id(data: bytes) -> str:
    """The snapshot id: lowercase hex sha256 of the canonical bytes."""
    return hashlib.sha256(data).hexdigest()


def short_id(sid: str) -> str:
    """The 12-hex-digit form people read in logs and widgets."""
    return sid[:12]


def load_snapshot(data: bytes, expected_id: str | None = None) -> dict:
    """Parse snapshot bytes, refusing anything that is not exactly what was published.

    The hash is checked first (a flipped byte must never turn into a different
    device silently), then that the bytes are canonical (so one document has one
    id), then the schema."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise SnapshotError(f"snapshot data must be bytes, got {type(data).__name__}", "pass the stored bytes unchanged")
    data = bytes(data)
    sid = snapshot_id(data)
    if expected_id is not None and sid != expected_id:
        raise SnapshotError(
            f"snapshot hash mismatch: expected {short_id(str(expected_id))}, the bytes hash to {short_id(sid)}",
            "the snapshot was altered or truncated after publication; re-publish it or pin another snapshot",
        )
    try:
        doc = json.loads(data.decode("ascii"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise SnapshotError(f"snapshot {short_id(sid)} is not JSON: {exc}", "snapshots are canonical ASCII JSON") from None
    if not isinstance(doc, dict):
        raise SnapshotError(f"snapshot {short_id(sid)} is not a JSON object", "snapshots are JSON objects") from None
    if canonical_bytes(doc) != data:
        raise SnapshotError(
            f"snapshot {short_id(sid)} is not in canonical form",
            "store exactly jupyter_vqpu.core.snapshot.canonical_bytes(doc)",
        )
    validate(doc)
    return doc


# ---------------------------------------------------------------- validation


def _fail(message: str, hint: str = "check the calibration data") -> SnapshotError:
    return SnapshotError(message, hint)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def validate(doc: dict) -> None:
    """Check a snapshot document against ``vqpu.snapshot/1``; raise SnapshotError on the first problem.

    Run on every load, so a hand-edited or foreign document fails with a line
    that names the field instead of deep inside the transpiler."""
    if doc.get("schema") != SCHEMA:
        raise _fail(f"unknown snapshot schema {doc.get('schema')!r}", f"this version reads {SCHEMA!r}")
    for key, kind in (("device", str), ("source", str), ("created_at", str), ("basis_gates", list),
                      ("qubits", list), ("gates", list)):
        if not isinstance(doc.get(key), kind):
            raise _fail(f"snapshot field {key!r} is missing or not a {kind.__name__}", "rebuild the snapshot")
    if not _is_int(doc.get("version")) or doc["version"] < 1:
        raise _fail(f"snapshot version must be a positive integer, got {doc.get('version')!r}", "rebuild the snapshot")
    if not isinstance(doc.get("noise"), bool):
        raise _fail("snapshot field 'noise' must be true or false", "rebuild the snapshot")
    n = doc.get("num_qubits")
    if not _is_int(n) or n < 1:
        raise _fail(f"snapshot num_qubits must be a positive integer, got {n!r}", "rebuild the snapshot")
    qubits = doc["qubits"]
    if len(qubits) != n:
        raise _fail(f"snapshot has {len(qubits)} qubit entries but num_qubits is {n}", "rebuild the snapshot")
    dt = doc.get("dt")
    if dt is not None and not (_is_number(dt) and dt > 0):
        raise _fail(f"snapshot dt must be a positive number of seconds or null, got {dt!r}")
    basis = doc["basis_gates"]
    if not all(isinstance(g, str) and g for g in basis) or basis != sorted(set(basis)):
        raise _fail("snapshot basis_gates must be sorted, distinct gate names", "rebuild the snapshot")
    cmap = doc.get("coupling_map")
    if cmap is not None:
        if not isinstance(cmap, list):
            raise _fail("snapshot coupling_map must be a list of [a, b] pairs or null")
        for pair in cmap:
            if not (isinstance(pair, list) and len(pair) == 2 and all(_is_int(q) and 0 <= q < n for q in pair)
                    and pair[0] != pair[1]):
                raise _fail(f"coupling_map entry {pair!r} is not a pair of distinct qubits in 0..{n - 1}")
    for i, q in enumerate(qubits):
        if not isinstance(q, dict):
            raise _fail(f"qubit {i}: entry is not an object")
        _check_qubit(i, q)
    faulty = doc.get("faulty_qubits", [])
    if not isinstance(faulty, list) or not all(_is_int(q) and 0 <= q < n for q in faulty):
        raise _fail(f"faulty_qubits must be a list of qubits in 0..{n - 1}")
    for g in doc["gates"]:
        if not (isinstance(g, dict) and isinstance(g.get("gate"), str) and isinstance(g.get("qubits"), list)):
            raise _fail(f"gate entry {str(g)[:80]} needs 'gate' (name) and 'qubits' (list)")
        _check_gate(g["gate"], g["qubits"], g.get("error"), g.get("duration"), n)


def _check_qubit(i: int, q: dict) -> None:
    for key in QUBIT_FIELDS:
        v = q.get(key)
        if v is None:
            continue
        if not _is_number(v):
            raise _fail(f"qubit {i}: {key} = {v!r} is not a finite number")
        if key in _PROBABILITIES and not 0 <= v <= 1:
            raise _fail(f"qubit {i}: {key} = {v} is not a probability in [0, 1]")
        if key in _POSITIVE and v <= 0:
            raise _fail(f"qubit {i}: {key.upper() if key != 'frequency' else key} = {v} is not positive")
        if key == "readout_length" and v < 0:
            raise _fail(f"qubit {i}: readout_length = {v} is negative")


def _check_gate(name: str, qubits: list, error: Any, duration: Any, n: int) -> None:
    where = f"gate {name} on {qubits}"
    if not qubits or not all(_is_int(q) and 0 <= q < n for q in qubits):
        raise _fail(f"{where}: qubits must be indices in 0..{n - 1}")
    if len(set(qubits)) != len(qubits):
        raise _fail(f"{where}: repeats a qubit")
    if error is not None and not (_is_number(error) and 0 <= error <= 1):
        raise _fail(f"{where}: error {error!r} is not a probability in [0, 1]")
    if duration is not None and not (_is_number(duration) and duration >= 0):
        raise _fail(f"{where}: duration {duration!r} is not a non-negative number of seconds")


# ------------------------------------------------------------ construction


def _utc_iso(value: str | datetime | None, what: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        when = value
    else:
        try:
            when = datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
        except ValueError:
            raise _fail(f"{what} {value!r} is not an ISO-8601 time", "e.g. 2025-02-26T15:16:25-05:00") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def _now() -> str:
    return _utc_iso(datetime.now(timezone.utc).replace(microsecond=0), "now")  # type: ignore[return-value]


def _to_si(value: Any, unit: Any, where: str) -> float | int:
    """Convert an IBM (value, unit) pair to SI, with the same arithmetic Qiskit uses (bit-equal values)."""
    if not _is_number(value):
        raise _fail(f"{where}: value {value!r} is not a finite number")
    unit = unit or ""
    if not isinstance(unit, str):
        raise _fail(f"{where}: unit {unit!r} is not text")
    base = unit
    for suffix in ("Hz", "s"):
        if unit.endswith(suffix):
            base = unit[: -len(suffix)]
            break
    if base == "" or unit == base and len(unit) <= 1:
        return value
    if len(base) != 1 or base not in _SI_PREFIX:
        raise _fail(f"{where}: unknown unit {unit!r}", "use s, ms, us, ns, Hz, MHz or GHz")
    power = _SI_PREFIX[base]
    return value / 10 ** (-power) if power < 0 else value * 10**power


def _standard_names() -> frozenset[str]:
    from qiskit.circuit.library import get_standard_gate_name_mapping

    return frozenset(get_standard_gate_name_mapping()) | _EXTRA_KNOWN


def snapshot_from_ibm(
    conf: dict | None,
    props: dict,
    *,
    device: str,
    version: int,
    source: str,
    created_at: str | None = None,
    base: dict | None = None,
) -> dict:
    """Build a snapshot from IBM backend JSON (``conf_*.json`` / ``props_*.json``).

    With ``conf=None`` the topology, native gates and dt come from ``base`` (the
    device's previous snapshot): a site refreshing only the daily calibration
    must not be able to change the device's shape by accident."""
    if not isinstance(props, dict) or not isinstance(props.get("qubits"), list) or not isinstance(props.get("gates"), list):
        raise _fail("calibration properties need 'qubits' and 'gates' lists", "pass an IBM props_*.json file")
    if conf is not None:
        if not isinstance(conf, dict):
            raise _fail("backend configuration is not a JSON object", "pass an IBM conf_*.json file")
        n = conf.get("n_qubits", conf.get("num_qubits"))
        if not _is_int(n) or n < 1:
            raise _fail(f"configuration n_qubits must be a positive integer, got {n!r}", "pass an IBM conf_*.json file")
        basis, coupling, dt, conf_gates = _from_conf(conf, n)
        backend_name = str(conf.get("backend_name") or props.get("backend_name") or device)
    else:
        if base is None:
            raise _fail("calibration properties alone need the device's current snapshot as a base",
                        "pass the configuration JSON too, or a base snapshot")
        validate(base)
        if not base["noise"]:
            raise _fail(f"device {base['device']!r} is noise-free and has no calibration to refresh",
                        "publish a calibrated device with both configuration and properties")
        n = base["num_qubits"]
        basis = list(base["basis_gates"])
        coupling = base["coupling_map"]
        dt = base["dt"]
        conf_gates = {}
        backend_name = str(props.get("backend_name") or base.get("backend_name") or device)
    if len(props["qubits"]) != n:
        raise _fail(
            f"the calibration has {len(props['qubits'])} qubits but the device has {n}",
            "use the calibration of the same backend" if conf is None else "use conf and props files of the same backend",
        )

    qubits, faulty = _qubits_from_props(props["qubits"])
    gates = _gates_from_props(props["gates"], basis, conf_gates, faulty, n)
    doc = {
        "schema": SCHEMA,
        "device": device,
        "version": version,
        "created_at": _utc_iso(created_at, "created_at") or _now(),
        "source": source,
        "backend_name": backend_name,
        "calibration_date": _utc_iso(props.get("last_update_date"), "last_update_date"),
        "num_qubits": n,
        "basis_gates": basis,
        "coupling_map": coupling,
        "dt": dt,
        "qubits": qubits,
        "gates": gates,
        "faulty_qubits": sorted(faulty),
        "noise": True,
    }
    validate(doc)
    canonical_bytes(doc)  # fail here, not at publication, on anything JSON cannot carry
    return doc


def _from_conf(conf: dict, n: int) -> tuple[list[str], list[list[int]] | None, float | None, dict[str, list]]:
    names = conf.get("basis_gates")
    if not isinstance(names, list) or not all(isinstance(g, str) for g in names):
        raise _fail("configuration basis_gates must be a list of gate names", "pass an IBM conf_*.json file")
    supported = conf.get("supported_instructions")
    if not isinstance(supported, list):
        supported = list(NON_UNITARY)
    wanted = set(names) | (set(supported) & set(NON_UNITARY + CONTROL_FLOW))
    # Like Qiskit's own converter: an instruction Qiskit has no definition for cannot be targeted.
    basis = sorted(wanted & _standard_names())

    raw = conf.get("coupling_map")
    coupling: list[list[int]] | None
    if raw is None:
        coupling = None
    else:
        if not isinstance(raw, list):
            raise _fail("configuration coupling_map must be a list of [a, b] pairs")
        pairs = set()
        for pair in raw:
            if not (isinstance(pair, list) and len(pair) == 2 and all(_is_int(q) for q in pair)):
                raise _fail(f"coupling_map entry {pair!r} is not a pair of qubit indices")
            if not all(0 <= q < n for q in pair) or pair[0] == pair[1]:
                raise _fail(f"coupling_map entry {pair} is out of range for {n} qubits",
                            "conf and props must describe the same backend")
            pairs.add((pair[0], pair[1]))
        coupling = [list(p) for p in sorted(pairs)]

    dt = conf.get("dt")
    if dt is not None:
        if not _is_number(dt) or dt <= 0:
            raise _fail(f"configuration dt = {dt!r} is not a positive number")
        dt = dt * 1e-9  # IBM ships dt in ns; Qiskit's converter multiplies by 1e-9
    conf_gates: dict[str, list] = {}
    for g in conf.get("gates") or []:
        if isinstance(g, dict) and isinstance(g.get("name"), str) and isinstance(g.get("coupling_map"), list):
            conf_gates[g["name"]] = g["coupling_map"]
    return basis, coupling, dt, conf_gates


def _qubits_from_props(raw: list) -> tuple[list[dict], set[int]]:
    qubits, faulty = [], set()
    for i, entries in enumerate(raw):
        if not isinstance(entries, list):
            raise _fail(f"qubit {i}: calibration entry is not a list of properties")
        q: dict[str, Any] = dict.fromkeys(QUBIT_FIELDS)
        for p in entries:
            if not isinstance(p, dict) or not isinstance(p.get("name"), str):
                raise _fail(f"qubit {i}: property {str(p)[:60]} has no name")
            if p["name"] == "operational":
                if not p.get("value"):
                    faulty.add(i)
                continue
            key = _IBM_QUBIT_NAMES.get(p["name"])
            if key is None:
                continue
            q[key] = _to_si(p.get("value"), p.get("unit"), f"qubit {i}: {p['name']}")
        _check_qubit(i, q)
        qubits.append(q)
    return qubits, faulty


def _gates_from_props(raw: list, basis: list[str], conf_gates: dict[str, list], faulty: set[int], n: int) -> list[dict]:
    wanted = set(basis) - {"measure", "delay", "barrier"} - set(CONTROL_FLOW)
    found: dict[tuple[str, tuple[int, ...]], dict] = {}
    dropped: set[tuple[str, tuple[int, ...]]] = set()
    for g in raw:
        if not isinstance(g, dict) or not isinstance(g.get("gate"), str) or not isinstance(g.get("qubits"), list):
            raise _fail(f"gate calibration {str(g)[:60]} needs 'gate' and 'qubits'")
        name = g["gate"]
        if name not in wanted:
            continue  # e.g. fractional gates the backend is not configured to offer
        qargs = tuple(g["qubits"])
        where = f"gate {name} on {list(qargs)}"
        values: dict[str, Any] = {}
        operational = True
        for p in g.get("parameters") or []:
            if not isinstance(p, dict):
                raise _fail(f"{where}: parameter {str(p)[:60]} is not an object")
            if p.get("name") == "gate_error":
                values["error"] = _to_si(p.get("value"), p.get("unit"), where + " gate_error")
            elif p.get("name") == "gate_length":
                values["duration"] = _to_si(p.get("value"), p.get("unit"), where + " gate_length")
            elif p.get("name") == "operational" and not p.get("value"):
                operational = False
        _check_gate(name, list(qargs), values.get("error"), values.get("duration"), n)
        if not operational or faulty.intersection(qargs):
            dropped.add((name, qargs))
            continue
        found[(name, qargs)] = {"gate": name, "qubits": list(qargs), "error": values.get("error"),
                                "duration": values.get("duration")}
    # Qubits the configuration offers a gate on, but without calibration: ideal there (as Qiskit does).
    for name, cmap in conf_gates.items():
        if name not in wanted:
            continue
        for qargs in cmap:
            key = (name, tuple(qargs))
            if not isinstance(qargs, list) or key in found or key in dropped or faulty.intersection(qargs):
                continue
            _check_gate(name, list(qargs), None, None, n)
            found[key] = {"gate": name, "qubits": list(qargs), "error": None, "duration": None}
    return [found[k] for k in sorted(found)]


def ideal_snapshot(num_qubits: int = 32, *, version: int = 1, created_at: str | None = None) -> dict:
    """A noise-free, all-to-all device: the baseline every noisy run is compared with."""
    if not _is_int(num_qubits) or num_qubits < 1:
        raise _fail(f"num_qubits must be a positive integer, got {num_qubits!r}", "e.g. 32")
    doc = {
        "schema": SCHEMA,
        "device": "ideal",
        "version": version,
        "created_at": _utc_iso(created_at, "created_at") or _now(),
        "source": "noise-free all-to-all simulator (no calibration)",
        "backend_name": "ideal",
        "calibration_date": None,
        "num_qubits": num_qubits,
        "basis_gates": list(IDEAL_BASIS),
        "coupling_map": None,
        "dt": None,
        "qubits": [dict.fromkeys(QUBIT_FIELDS) for _ in range(num_qubits)],
        "gates": [],
        "faulty_qubits": [],
        "noise": False,
    }
    validate(doc)
    return doc


# ------------------------------------------------------------- file input


def read_calibration_files(paths: Iterable[str | Path]) -> tuple[dict | None, dict]:
    """Read IBM calibration JSON as a site operator has it: (configuration or None, properties).

    Accepts one props file, a conf file plus a props file in either order, or
    one {"configuration": ..., "properties": ...} document; the kind of each
    file is told by its content, not its name."""
    paths = [Path(p) for p in paths]
    if not paths:
        raise _fail("no calibration file given", "pass props_<device>.json, optionally with conf_<device>.json")
    if len(paths) > 2:
        raise _fail(f"{len(paths)} calibration files given, at most 2 make sense",
                    "pass props_<device>.json, optionally with conf_<device>.json")
    return calibration_from_documents([(p.name, _read_json(p)) for p in paths])


def calibration_from_documents(docs: list[tuple[str, Any]]) -> tuple[dict | None, dict]:
    """(configuration or None, properties) from named, already parsed JSON documents.

    The one reader of IBM calibration for files (``vqpu device update``) and for
    the admin API (a JSON body), so both accept and refuse alike."""
    conf: dict | None = None
    props: dict | None = None
    for name, doc in docs:
        kind = _classify(doc)
        if kind == "combined":
            if len(docs) != 1:
                raise _fail(f"{name} already holds configuration and properties", "pass it alone")
            conf, props = doc["configuration"], doc["properties"]
            if not isinstance(conf, dict) or _classify(props) != "props":
                raise _fail(f"{name}: 'configuration' must be an object and 'properties' an IBM properties object",
                            "see props_fez.json in qiskit-ibm-runtime for the shape")
        elif kind == "props":
            if props is not None:
                raise _fail("two properties files given", "pass one props file, optionally with one conf file")
            props = doc
        elif kind == "conf":
            if conf is not None:
                raise _fail("two configuration files given", "pass one conf file with one props file")
            conf = doc
        else:
            raise _fail(f"{name} is neither an IBM backend configuration nor backend properties",
                        "properties have 'qubits' and 'gates'; a configuration has 'n_qubits' and 'coupling_map'")
    if props is None:
        raise _fail("no properties file given (only a configuration)", "add props_<device>.json")
    return conf, props


def _read_json(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise _fail(f"calibration file {path} does not exist", "check the path") from None
    except IsADirectoryError:
        raise _fail(f"calibration file {path} is a directory", "pass the JSON file itself") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise _fail(f"cannot read calibration file {path}: {exc}", "check the file") from None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise _fail(f"{path.name} is not JSON: {exc}", "calibration files are IBM backend JSON") from None


def _classify(doc: Any) -> str:
    if not isinstance(doc, dict):
        return "unknown"
    if "configuration" in doc and "properties" in doc:
        return "combined"
    if isinstance(doc.get("qubits"), list) and isinstance(doc.get("gates"), list):
        return "props"
    if any(k in doc for k in ("coupling_map", "basis_gates", "n_qubits")):
        return "conf"
    return "unknown"


# ----------------------------------------------------------------- target

def target_bytes(target: Target) -> int:
    """Size estimate of a Target in memory: ~0.9 KB per calibrated (instruction, qubits) entry (its
    InstructionProperties, the qargs tuple, the name indexes): Fez's 1,447 entries measured 1.4 MB of RSS."""
    return 64 * 1024 + 900 * sum(len(target[name]) for name in target.operation_names)


TARGETS: Memo[Target] = Memo(maxsize=cache_bytes("targets"), getsizeof=target_bytes)


def build_target(doc: dict, sid: str | None = None) -> Target:
    """The Qiskit ``Target`` a snapshot describes, cached by snapshot id.

    Equivalent to what qiskit-ibm-runtime's converter builds from the same
    calibration (same operations, qargs, errors and durations), so transpiling
    against a snapshot and against the fake backend agree. Building one for 156
    qubits costs tens of milliseconds, and a warm worker sees the same snapshot
    many times, hence the cache. Treat the returned Target as read-only.
    ``sid`` skips re-hashing when the caller already verified the id."""
    return target_for(doc, sid)[0]


def target_for(doc: dict, sid: str | None = None) -> tuple[Target, bool]:
    """``build_target`` and whether the Target was already cached (a runner records it)."""
    return TARGETS.get(sid or snapshot_id(canonical_bytes(doc)), lambda: _make_target(doc))


def _make_target(doc: dict) -> Target:
    from qiskit.circuit import ForLoopOp, IfElseOp, SwitchCaseOp, WhileLoopOp
    from qiskit.circuit.library import get_standard_gate_name_mapping
    from qiskit.providers import QubitProperties
    from qiskit.transpiler import InstructionProperties, Target

    flow = {"if_else": IfElseOp, "for_loop": ForLoopOp, "while_loop": WhileLoopOp, "switch_case": SwitchCaseOp}
    mapping = get_standard_gate_name_mapping()
    n = doc["num_qubits"]
    if not doc["noise"]:
        target = Target(num_qubits=n, dt=doc.get("dt"), description=f"vqpu {doc['device']}")
        for name in doc["basis_gates"]:
            if name in flow:
                target.add_instruction(flow[name], name=name)
            elif name in mapping:
                target.add_instruction(mapping[name], name=name)
        return target

    qubits = doc["qubits"]
    faulty = set(doc.get("faulty_qubits", []))
    live = [q for q in range(n) if q not in faulty]
    target = Target(
        num_qubits=n,
        dt=doc.get("dt"),
        description=f"vqpu {doc['device']} v{doc['version']}",
        qubit_properties=[QubitProperties(t1=q.get("t1"), t2=q.get("t2"), frequency=q.get("frequency")) for q in qubits],
    )
    by_gate: dict[str, dict[tuple[int, ...], Any]] = {}
    for g in doc["gates"]:
        error, duration = g.get("error"), g.get("duration")
        props = None if error is None and duration is None else InstructionProperties(error=error, duration=duration)
        by_gate.setdefault(g["gate"], {})[tuple(g["qubits"])] = props
    edges = [tuple(p) for p in doc["coupling_map"]] if doc.get("coupling_map") is not None else None
    for name in doc["basis_gates"]:
        if name in flow:
            target.add_instruction(flow[name], name=name)
            continue
        op = mapping.get(name)
        if op is None:
            continue  # barrier needs no Target entry; unknown names were refused at creation
        if name == "measure":
            props = {(q,): InstructionProperties(error=qubits[q].get("readout_error"),
                                                 duration=qubits[q].get("readout_length")) for q in live}
        elif name == "delay":
            props = {(q,): None for q in live}
        elif name in by_gate:
            props = by_gate[name]
        elif op.num_qubits == 1:
            props = {(q,): None for q in live}
        elif op.num_qubits == 2 and edges is not None:
            props = {e: None for e in edges if not faulty.intersection(e)}
        else:
            props = None  # no calibration and no topology for it: ideal on any qubits
        target.add_instruction(op, props, name=name)
    return target
