"""Device snapshots: canonical identity, IBM import, validation, file forms, Target equivalence."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from jupyter_vqpu.core import catalog
from jupyter_vqpu.core import snapshot as S
from jupyter_vqpu.core.errors import SnapshotError, UnknownDevice

REPO = Path(__file__).resolve().parents[2]
WHEN = "2026-01-02T03:04:05Z"


@pytest.fixture(scope="module")
def fez_json() -> tuple[dict, dict]:
    return catalog.builtin_calibration("fez")


@pytest.fixture(scope="module")
def fez(fez_json) -> dict:
    conf, props = fez_json
    return S.snapshot_from_ibm(conf, props, device="fez", version=1, source="test", created_at=WHEN)


def _copy(doc: dict) -> dict:
    return json.loads(json.dumps(doc))


# ---------------------------------------------------------------- identity


def test_canonical_bytes_and_id_are_stable(fez):
    data = S.canonical_bytes(fez)
    assert data == S.canonical_bytes(_copy(fez))
    assert data == S.canonical_bytes(dict(reversed(list(fez.items()))))  # key order is irrelevant
    sid = S.snapshot_id(data)
    assert len(sid) == 64 and sid == sid.lower() and int(sid, 16) >= 0
    assert S.short_id(sid) == sid[:12]
    assert data.isascii() and b", " not in data and b": " not in data  # compact separators
    assert S.load_snapshot(data, sid) == fez


def test_one_changed_byte_is_a_hash_mismatch(fez):
    data = S.canonical_bytes(fez)
    sid = S.snapshot_id(data)
    i = data.index(b'"t1":') + 6  # a digit of the first qubit's T1
    tampered = data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1:]
    assert len(tampered) == len(data) and tampered != data
    with pytest.raises(SnapshotError, match="snapshot hash mismatch") as err:
        S.load_snapshot(tampered, sid)
    assert S.short_id(sid) in err.value.message and err.value.hint


def test_non_canonical_bytes_are_refused(fez):
    pretty = json.dumps(fez, indent=1, sort_keys=True).encode()
    with pytest.raises(SnapshotError, match="canonical"):
        S.load_snapshot(pretty, S.snapshot_id(pretty))
    with pytest.raises(SnapshotError, match="not JSON"):
        S.load_snapshot(b"{not json")


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda d: d.update(schema="vqpu.snapshot/9"), "unknown snapshot schema"),
    (lambda d: d.update(num_qubits=155), "qubit entries but num_qubits"),
    (lambda d: d["coupling_map"].append([0, 999]), "coupling_map entry"),
    (lambda d: d["qubits"][3].update(t1=-1.0), "qubit 3: T1"),
    (lambda d: d["gates"][0].update(error=1.5), "not a probability"),
    (lambda d: d.update(noise="yes"), "noise"),
])
def test_schema_violations_are_named(fez, mutate, message):
    doc = _copy(fez)
    mutate(doc)
    data = S.canonical_bytes(doc)
    with pytest.raises(SnapshotError, match=message):
        S.load_snapshot(data, S.snapshot_id(data))


def test_nan_cannot_enter_a_snapshot(fez):
    doc = _copy(fez)
    doc["qubits"][0]["t2"] = float("nan")
    with pytest.raises(SnapshotError, match="finite"):
        S.canonical_bytes(doc)


# -------------------------------------------------------------- IBM import


def test_fez_snapshot_carries_the_real_device(fez, fez_json):
    conf, props = fez_json
    assert fez["schema"] == S.SCHEMA and fez["device"] == "fez" and fez["backend_name"] == "ibm_fez"
    assert fez["num_qubits"] == 156 and len(fez["qubits"]) == 156 and fez["noise"] is True
    assert fez["coupling_map"] == [list(p) for p in sorted({tuple(p) for p in conf["coupling_map"]})]
    assert len(fez["coupling_map"]) == 352 and [0, 1] in fez["coupling_map"]
    assert {"cz", "rz", "sx", "x", "measure", "reset", "delay"} <= set(fez["basis_gates"])
    assert fez["basis_gates"] == sorted(fez["basis_gates"])
    # the real T1 of qubit 0 (props file in us, snapshot in s)
    t1_us = next(p["value"] for p in props["qubits"][0] if p["name"] == "T1")
    assert fez["qubits"][0]["t1"] == pytest.approx(t1_us * 1e-6, rel=1e-15)
    t2_us = next(p["value"] for p in props["qubits"][17] if p["name"] == "T2")
    assert fez["qubits"][17]["t2"] == pytest.approx(t2_us * 1e-6, rel=1e-15)
    assert fez["qubits"][0]["readout_length"] == pytest.approx(1.56e-6)
    assert fez["dt"] == pytest.approx(4e-9)
    assert fez["calibration_date"] == "2025-02-26T20:16:25Z" and fez["created_at"] == WHEN
    cz01 = next(g for g in fez["gates"] if g["gate"] == "cz" and g["qubits"] == [0, 1])
    assert 0 < cz01["error"] < 0.1 and cz01["duration"] == pytest.approx(84e-9)
    keys = [(g["gate"], g["qubits"]) for g in fez["gates"]]
    assert keys == sorted(keys)
    assert not {g["gate"] for g in fez["gates"]} & {"rzz", "rx"}  # not in the configured basis


def test_refreshing_only_the_calibration_keeps_the_topology(fez, fez_json):
    _, props = fez_json
    props = _copy(props)
    props["last_update_date"] = "2026-11-24T10:00:00+00:00"
    props["qubits"][0] = [dict(p, value=p["value"] * 0.5) if p["name"] == "T1" else p for p in props["qubits"][0]]
    new = S.snapshot_from_ibm(None, props, device="fez", version=2, source="refresh", base=fez, created_at=WHEN)
    assert new["coupling_map"] == fez["coupling_map"] and new["basis_gates"] == fez["basis_gates"]
    assert new["dt"] == fez["dt"] and new["version"] == 2
    assert new["qubits"][0]["t1"] == pytest.approx(fez["qubits"][0]["t1"] * 0.5)
    assert new["calibration_date"] == "2026-11-24T10:00:00Z"
    with pytest.raises(SnapshotError, match="base"):
        S.snapshot_from_ibm(None, props, device="fez", version=2, source="refresh")
    with pytest.raises(SnapshotError, match="noise-free"):
        S.snapshot_from_ibm(None, props, device="ideal", version=2, source="refresh", base=S.ideal_snapshot(156))


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda c, p: p["qubits"].pop(), "calibration has 155 qubits but the device has 156"),
    (lambda c, p: c["coupling_map"].append([0, 400]), "out of range"),
    (lambda c, p: p["qubits"][5].__setitem__(0, dict(p["qubits"][5][0], value=-3.0)), "qubit 5: T1"),
    (lambda c, p: p["qubits"][2].__setitem__(2, dict(p["qubits"][2][2], value=1.7)), "qubit 2: readout_error"),
    (lambda c, p: p["gates"][0]["parameters"][0].update(value=2.0), "not a probability"),
    (lambda c, p: p["gates"][0]["parameters"][1].update(unit="parsec"), "unknown unit"),
    (lambda c, p: p.pop("gates"), "'qubits' and 'gates'"),
])
def test_bad_calibration_is_one_readable_line(fez_json, mutate, message):
    conf, props = _copy(fez_json[0]), _copy(fez_json[1])
    mutate(conf, props)
    with pytest.raises(SnapshotError, match=message) as err:
        S.snapshot_from_ibm(conf, props, device="fez", version=1, source="t")
    assert "\n" not in str(err.value) and err.value.hint


def test_ideal_snapshot():
    doc = S.ideal_snapshot(created_at=WHEN)
    assert doc["device"] == "ideal" and doc["noise"] is False and doc["coupling_map"] is None
    assert doc["num_qubits"] == 32 and len(doc["qubits"]) == 32
    must = {"cx", "cz", "h", "x", "y", "z", "s", "sdg", "t", "tdg", "sx", "rx", "ry", "rz", "swap", "ccx", "u", "p",
            "measure", "reset", "barrier", "delay", "id"}
    assert must <= set(doc["basis_gates"])
    data = S.canonical_bytes(doc)
    assert S.load_snapshot(data, S.snapshot_id(data)) == doc
    assert S.snapshot_id(S.canonical_bytes(S.ideal_snapshot(created_at=WHEN))) == S.snapshot_id(data)


# ---------------------------------------------------------- calibration files


def _write(tmp_path: Path, name: str, doc) -> Path:
    p = tmp_path / name
    p.write_text(json.dumps(doc) if not isinstance(doc, str) else doc)
    return p


def test_read_calibration_files_forms(tmp_path, fez_json):
    conf, props = fez_json
    pc = _write(tmp_path, "conf.json", conf)
    pp = _write(tmp_path, "props.json", props)
    both = _write(tmp_path, "both.json", {"configuration": conf, "properties": props})
    assert S.read_calibration_files([pp]) == (None, props)
    assert S.read_calibration_files([pc, pp]) == (conf, props)
    assert S.read_calibration_files([str(pp), str(pc)]) == (conf, props)  # any order, told by content
    assert S.read_calibration_files([both]) == (conf, props)


def test_read_calibration_files_errors(tmp_path, fez_json):
    conf, props = fez_json
    pc = _write(tmp_path, "conf.json", conf)
    pp = _write(tmp_path, "props.json", props)
    cases = [
        ([], "no calibration file"),
        ([tmp_path / "missing.json"], "does not exist"),
        ([_write(tmp_path, "bad.json", "{oops")], "bad.json is not JSON"),
        ([_write(tmp_path, "list.json", [1, 2])], "neither an IBM backend configuration nor backend properties"),
        ([pc], "only a configuration"),
        ([pp, pp], "two properties files"),
        ([pc, pc], "two configuration files"),
        ([pc, pp, pp], "at most 2"),
        ([tmp_path], "is a directory"),
    ]
    for paths, message in cases:
        with pytest.raises(SnapshotError, match=message):
            S.read_calibration_files(paths)


# ------------------------------------------------------------------ target


def test_build_target_matches_fake_fez(fez):
    from qiskit_ibm_runtime.fake_provider import FakeFez

    ref = FakeFez().target
    ours = S.build_target(fez)
    assert set(ours.operation_names) == set(ref.operation_names)
    assert ours.num_qubits == ref.num_qubits == 156 and ours.dt == ref.dt
    for name in ref.operation_names:
        assert set(ours[name]) == set(ref[name]), name
    sample = [("cz", (0, 1)), ("cz", (1, 0)), ("cz", (154, 155)), ("sx", (17,)), ("x", (100,)), ("id", (3,)),
              ("rz", (5,)), ("measure", (0,)), ("measure", (155,)), ("reset", (42,)), ("delay", (7,))]
    for name, qargs in sample:
        r, o = ref[name][qargs], ours[name][qargs]
        assert (None if r is None else (r.error, r.duration)) == (None if o is None else (o.error, o.duration)), name
    mismatched = [(n, q) for n in ref.operation_names for q, r in ref[n].items()
                  if r is not None and (r.error, r.duration) != (ours[n][q].error, ours[n][q].duration)]
    assert mismatched == []
    for a, b in zip(ref.qubit_properties, ours.qubit_properties):
        assert (a.t1, a.t2, a.frequency) == (b.t1, b.t2, b.frequency)


def test_build_target_is_cached_per_snapshot(fez):
    assert S.build_target(fez) is S.build_target(_copy(fez))
    other = _copy(fez)
    other["version"] = 2
    assert S.build_target(other) is not S.build_target(fez)


def test_ideal_target_is_all_to_all():
    t = S.build_target(S.ideal_snapshot(8, created_at=WHEN))
    assert t.num_qubits == 8 and t.build_coupling_map() is None
    assert {"cx", "h", "measure", "ccx", "swap"} <= set(t.operation_names)
    assert t.instruction_supported("cx", (7, 2))


# ----------------------------------------------------------------- catalog


def test_catalog_devices(fez):
    assert catalog.BUILTIN == ("fez", "torino", "marrakesh", "kingston", "ideal")
    doc = catalog.builtin_snapshot("fez", created_at=WHEN)
    assert doc == {**fez, "source": doc["source"]}
    assert doc["source"].startswith("IBM Fez calibration as shipped in qiskit-ibm-runtime ")
    assert "(FakeFez, props_fez.json)" in doc["source"]
    assert catalog.builtin_snapshot("torino")["num_qubits"] == 133
    assert catalog.builtin_snapshot("ideal", version=3)["version"] == 3
    with pytest.raises(UnknownDevice, match="unknown device 'nowhere'") as err:
        catalog.builtin_snapshot("nowhere")
    assert "fez, torino, marrakesh, kingston, ideal" in err.value.hint


def test_catalog_and_snapshot_import_light():
    code = ("import sys, jupyter_vqpu.core.catalog, jupyter_vqpu.core.snapshot;"
            "print(sorted(m for m in sys.modules if m.startswith(('qiskit', 'redis'))))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_faulty_qubits_and_gates_are_left_out_as_qiskit_does(fez_json):
    from qiskit_ibm_runtime.models import BackendConfiguration, BackendProperties
    from qiskit_ibm_runtime.utils.backend_converter import convert_to_target

    conf, props = _copy(fez_json[0]), _copy(fez_json[1])
    props["qubits"][5].append({"date": "2025-02-26T00:00:00Z", "name": "operational", "unit": "", "value": 0})
    cz = next(g for g in props["gates"] if g["gate"] == "cz" and g["qubits"] == [0, 1])
    cz["parameters"].append({"date": "2025-02-26T00:00:00Z", "name": "operational", "unit": "", "value": 0})
    doc = S.snapshot_from_ibm(conf, props, device="fez", version=1, source="t", created_at=WHEN)
    assert doc["faulty_qubits"] == [5]
    assert not [g for g in doc["gates"] if 5 in g["qubits"] or (g["gate"] == "cz" and g["qubits"] == [0, 1])]

    ref = convert_to_target(BackendConfiguration.from_dict(conf), BackendProperties.from_dict(props))
    ours = S.build_target(doc)
    for name in ref.operation_names:
        assert set(ours[name]) == set(ref[name]), name
    assert (5,) not in ours["measure"] and (0, 1) not in ours["cz"] and (1, 0) in ours["cz"]
