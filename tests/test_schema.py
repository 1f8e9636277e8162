"""The HDF5 contract: round trip, recorded attributes, and one-line errors for broken files."""

import json

import h5py
import numpy as np
import pytest

from sim2real.data import h5, schema
from sim2real.errors import Sim2RealError
from sim2real.testing import make_synthetic, synthetic_arrays


def test_round_trip_keeps_arrays_and_attrs(tmp_path):
    arrays = synthetic_arrays(n=10, size=12, num_classes=2)
    attrs = h5.make_attrs("source", {"n_samples": 10, "nested": {"a": 1}}, seed=7)
    h5.write(tmp_path / "a.h5", dict(arrays), attrs, class_names=["mug", "drill"])
    d = h5.read(tmp_path / "a.h5")
    for key in ("rgb", "depth", "mask", "label", "quat", "trans"):
        np.testing.assert_array_equal(getattr(d, key), arrays[key])
        assert getattr(d, key).dtype == schema.PER_SAMPLE[key][1]
    assert d.class_names == ["mug", "drill"]
    assert d.attrs["schema_version"] == schema.SCHEMA_VERSION
    assert d.attrs["seed"] == 7 and d.attrs["domain"] == "source"
    assert json.loads(d.attrs["config"]) == {"n_samples": 10, "nested": {"a": 1}}
    assert d.attrs["sim2real_version"]


def test_write_canonicalises_quaternions(tmp_path):
    arrays = synthetic_arrays(n=4, size=8, num_classes=2)
    arrays["quat"] = -arrays["quat"]  # w <= 0 now
    h5.write(tmp_path / "q.h5", arrays, h5.make_attrs("source", {}, 0), class_names=["a", "b"])
    q = h5.read(tmp_path / "q.h5").quat
    assert np.all(q[:, 0] >= 0)
    np.testing.assert_allclose(q, -arrays["quat"], atol=1e-7)


def _break(path, fn):
    with h5py.File(path, "r+") as f:
        fn(f)


@pytest.mark.parametrize("breaker, message", [
    (lambda f: f.__delitem__("rgb"), "has no 'rgb'"),
    (lambda f: (f.__delitem__("quat"), f.create_dataset("quat", data=np.ones((20, 4), np.float32))), "unit quaternions"),
    (lambda f: (f.__delitem__("label"), f.create_dataset("label", data=np.full(20, 9))), "labels must lie in [0, 3)"),
    (lambda f: (f.__delitem__("trans"), f.create_dataset("trans", data=np.zeros((19, 3), np.float32))), "'trans' has shape (19, 3)"),
    (lambda f: f.attrs.__setitem__("schema_version", "2.0"), "schema version 2.0"),
    (lambda f: f.attrs.__setitem__("domain", "sim"), "domain='sim'"),
    (lambda f: f["mask"].__setitem__((0, 0, 0), ~f["mask"][0, 0, 0]), "'mask' disagrees with depth > 0 in sample 0"),
])
def test_validation_errors_name_file_and_problem(tmp_path, breaker, message):
    p = make_synthetic(tmp_path / "x.h5", n=20, size=8)
    _break(p, breaker)
    with pytest.raises(Sim2RealError) as e:
        h5.read(p)
    assert str(p) in str(e.value) and message in str(e.value)
    assert "\n" not in str(e.value)


def test_quaternion_with_negative_w_rejected(tmp_path):
    p = make_synthetic(tmp_path / "x.h5", n=6, size=8)
    with h5py.File(p, "r+") as f:
        q = f["quat"][()]
        q[2] = -np.abs(q[2])
        f["quat"][...] = q
    with pytest.raises(Sim2RealError, match="w >= 0"):
        h5.read(p)


def test_corrupt_and_missing_files(tmp_path):
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"this is not hdf5" * 10)
    with pytest.raises(Sim2RealError, match="not a readable HDF5 file"):
        h5.read(bad)
    with pytest.raises(Sim2RealError, match="file not found"):
        h5.read(tmp_path / "missing.h5")
    p = make_synthetic(tmp_path / "trunc.h5", n=20, size=8)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(Sim2RealError):
        h5.read(p)


def test_failed_write_leaves_no_file(tmp_path):
    arrays = synthetic_arrays(n=4, size=8, num_classes=2)
    arrays["label"] = np.array([0, 1, 5, 0])  # out of range: validation before the rename fails
    with pytest.raises(Sim2RealError):
        h5.write(tmp_path / "out.h5", arrays, h5.make_attrs("source", {}, 0), class_names=["a", "b"])
    assert list(tmp_path.iterdir()) == []


def test_symmetries_round_trip_and_old_files_read_as_unknown(tmp_path):
    from sim2real.symmetry import Symmetry

    sym = Symmetry.from_dict({"continuous": [{"axis": [0, 1, 0], "offset": [0, 0, 0.001]}],
                              "discrete": [{"axis": [1, 0, 0], "angle_deg": 180}]})
    arrays = synthetic_arrays(n=6, size=8, num_classes=2)
    h5.write(tmp_path / "s.h5", arrays, h5.make_attrs("source", {}, 0), class_names=["a", "b"], symmetries=[None, sym])
    d = h5.read(tmp_path / "s.h5")
    assert d.symmetries[0] is None and d.symmetries[1] == sym
    assert d.attrs["schema_version"] == "1.1"
    with h5py.File(tmp_path / "s.h5", "r") as f:  # stored as JSON in metres
        items = json.loads(f["symmetries"][()])
    assert items[0] is None and items[1]["continuous"][0]["offset"] == [0, 0, 0.001]
    # the per-class loop of a copier: arrays["symmetries"] works like the keyword
    copy = dict(arrays, symmetries=d.symmetries)
    h5.write(tmp_path / "c.h5", copy, h5.make_attrs("source", {}, 0), class_names=["a", "b"])
    assert h5.read(tmp_path / "c.h5").symmetries[1] == sym
    # a file without the dataset (schema 1.0, or unknown symmetries) reads as None
    h5.write(tmp_path / "u.h5", arrays, h5.make_attrs("source", {}, 0), class_names=["a", "b"])
    _break(tmp_path / "u.h5", lambda f: f.attrs.__setitem__("schema_version", "1.0"))
    assert h5.read(tmp_path / "u.h5").symmetries is None


@pytest.mark.parametrize("text, message", [
    ("not json", "'symmetries' is not valid JSON"),
    ('[null]', "'symmetries' has 1 entries, expected one per class (3)"),
    ('[null, {"discrete": [[1, 0, 0, 0, 0, 1, 0, 0, 0, 0, -1, 0, 0, 0, 0, 1]]}, null]', "proper rotation"),
    ('[null, {"continuous": [{"axis": [0, 0, 3]}]}, null]', "unit vector"),
    ('{"a": 1}', "expected a list"),
])
def test_bad_symmetries_are_one_line_errors(tmp_path, text, message):
    p = make_synthetic(tmp_path / "x.h5", n=6, size=8)
    _break(p, lambda f: f.create_dataset("symmetries", data=text, dtype=h5py.string_dtype()))
    with pytest.raises(Sim2RealError) as e:
        h5.read(p)
    assert str(p) in str(e.value) and message in str(e.value) and "\n" not in str(e.value)
