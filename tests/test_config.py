"""Typed configs: YAML + --set overrides, unknown keys and bad values as one-line errors."""

import pytest

from sim2real.config import load_config, parse_overrides, to_dict
from sim2real.errors import Sim2RealError
from sim2real.render.config import RenderConfig


def test_defaults_file_and_overrides(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("n_samples: 50\ncamera:\n  fov_deg: 30\nimage_size: [48, 64]\n")
    cfg = load_config(RenderConfig, p, ["camera.fill=0.5", "pose.sampler=view_sphere", "classes=[a, b]"])
    assert cfg.n_samples == 50 and cfg.camera.fov_deg == 30.0 and cfg.camera.fill == 0.5
    assert cfg.size_hw == (48, 64) and cfg.pose.sampler == "view_sphere" and cfg.classes == ["a", "b"]
    assert to_dict(cfg)["camera"]["fill"] == 0.5
    assert load_config(RenderConfig, "render-default").n_samples == 1000  # shipped config by name


@pytest.mark.parametrize("sets, message", [
    (["n_samplez=3"], "unknown config key 'n_samplez'"),
    (["camera.fovv=3"], "unknown config key 'fovv'"),
    (["n_samples=0"], "n_samples: must be > 0"),
    (["image_size=0"], "image_size: must be > 0"),
    (["image_size=abc"], "image_size"),
    (["pose.sampler=gaussian"], "expected one of 'uniform', 'view_sphere'"),
    (["camera.fx=100"], "give all of fx, fy, cx, cy"),
    (["lights.count=[3, 1]"], "lights.count"),
    (["n_samples"], "expected key=value"),
])
def test_bad_values_are_one_line_errors(sets, message):
    with pytest.raises(Sim2RealError) as e:
        load_config(RenderConfig, None, sets)
    assert message in str(e.value)
    assert "\n" not in str(e.value)


def test_missing_and_invalid_yaml(tmp_path):
    with pytest.raises(Sim2RealError, match="no such config file"):
        load_config(RenderConfig, tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\n")
    with pytest.raises(Sim2RealError, match="invalid YAML"):
        load_config(RenderConfig, bad)
    lst = tmp_path / "list.yaml"
    lst.write_text("- 1\n- 2\n")
    with pytest.raises(Sim2RealError, match="expected a YAML mapping"):
        load_config(RenderConfig, lst)


def test_parse_overrides_nested():
    assert parse_overrides(["a.b.c=1", "a.d=x", "e=[1, 2]"]) == {"a": {"b": {"c": 1}, "d": "x"}, "e": [1, 2]}


def test_load_config_defaults_go_under_the_file_then_the_sets(tmp_path):
    """``defaults=``: a mapping, a config instance or a shipped name, deep-merged under the file; ``--set`` last."""
    p = tmp_path / "c.yaml"
    p.write_text("camera:\n  fov_deg: 30\n")
    under = {"n_samples": 7, "camera": {"fill": 0.5, "fov_deg": 10.0}, "lights": {"count": [2, 3]}}
    cfg = load_config(RenderConfig, p, ["lights.count=[1, 1]"], defaults=under)
    # the file's partial camera section keeps the defaults' other keys; the set beats both
    assert cfg.n_samples == 7 and cfg.camera.fov_deg == 30.0 and cfg.camera.fill == 0.5 and cfg.lights.count == (1, 1)
    inst = RenderConfig(n_samples=9)
    assert load_config(RenderConfig, None, None, defaults=inst) == inst
    assert load_config(RenderConfig, p, defaults="render-default").n_samples == 1000  # a shipped config under the file
    assert load_config(RenderConfig, p, defaults=None) == load_config(RenderConfig, p)
    with pytest.raises(Sim2RealError, match=r"c.yaml \+ --set.camera: unknown config key 'fovv'"):  # messages name the file
        load_config(RenderConfig, p, ["camera.fovv=1"], defaults=under)
    with pytest.raises(TypeError, match="defaults"):
        load_config(RenderConfig, p, defaults=3)
