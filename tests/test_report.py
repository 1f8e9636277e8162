"""The HTML report's structure: tables, headings, embedded PNGs that decode, no external resources; report.md and
metrics.json beside it. (The look was checked in headless Chromium by hand; this test guards the structure.)"""

from __future__ import annotations

import base64
import io
import json
import re
from html.parser import HTMLParser

import numpy as np
import pytest
from PIL import Image

from sim2real.cli import main
from sim2real.config import load_config
from sim2real.eval.report import CHANCE_NAME, GAP_NA
from sim2real.testing import make_synthetic
from sim2real.train.pose import PoseConfig, train_pose


class ReportParser(HTMLParser):
    """Collects tables (as lists of rows of cell text), images, headings and external references."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[dict] = []
        self.images: list[dict] = []
        self.headings: list[tuple[str, str]] = []
        self.external: list[str] = []
        self._cell: list[str] | None = None
        self._row: list[str] | None = None
        self._heading: str | None = None
        self._text: list[str] = []
        self.stack: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for key in ("src", "href"):
            if key in a and re.match(r"^(https?:)?//", a[key] or ""):
                self.external.append(a[key])
        if tag not in ("img", "meta", "br"):
            self.stack.append(tag)
        if tag == "table":
            self.tables.append({"class": a.get("class"), "header": [], "rows": []})
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "img":
            self.images.append(a)
        elif tag in ("h1", "h2", "h3"):
            self._heading, self._text = tag, []

    def handle_endtag(self, tag):
        if self.stack and self.stack[-1] == tag:
            self.stack.pop()
        if tag in ("td", "th") and self._cell is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None:
            t = self.tables[-1]
            if "thead" in self.stack:
                t["header"] = self._row
            else:
                t["rows"].append(self._row)
            self._row = None
        elif tag == self._heading:
            self.headings.append((tag, "".join(self._text).strip()))
            self._heading = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)
        if self._heading is not None:
            self._text.append(data)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    d = tmp_path_factory.mktemp("report")
    src = make_synthetic(d / "src.h5", n=48, size=16, num_classes=3, seed=0, domain="source")
    tgt = make_synthetic(d / "tgt.h5", n=48, size=16, num_classes=3, seed=1, domain="target")
    test = make_synthetic(d / "test.h5", n=24, size=16, num_classes=3, seed=3, domain="target")
    cfg = load_config(PoseConfig, "pose-tiny", ["steps=6", "device=cpu", "checkpoint_every=6"])
    train_pose([src], d / "source_only", cfg, show_progress=False)
    train_pose([tgt], d / "target_only", cfg, show_progress=False)
    out = d / "rep"
    rc = main(["evaluate", str(d / "source_only"), str(d / "target_only"), "--test", str(test), "-o", str(out),
               "--memorisation", str(src), "--target-train", str(tgt), "--memorisation-n", "6", "--worst", "6"])
    assert rc == 0
    parser = ReportParser()
    parser.feed((out / "report.html").read_text())
    return out, parser


def test_html_headline_table_comes_first_and_lists_models(report):
    _, p = report
    assert p.headings[0] == ("h1", "sim2real evaluation report")
    assert p.headings[1] == ("h2", "Summary")
    head = p.tables[0]
    assert head["class"] == "headline"
    assert head["header"][:4] == ["Model", "Trained on", "Method", "Accuracy"]
    for col in ("Mean angle err.", "Median angle err.", "ADD recall*", "ADD-S recall*", "Gap closed (acc.)",
                "Gap closed (mean angle)"):
        assert col in head["header"]
    models = [r for r in head["rows"] if r[0] != CHANCE_NAME]
    assert [r[0] for r in models] == ["source_only", "target_only"]
    assert [r[2] for r in models] == ["none", "none"]  # no adaptation method behind either
    assert head["rows"][-1][:2] == [CHANCE_NAME, "baseline"]  # the constant-rotation baseline, last
    assert [r[1] for r in models] == ["source-only", "target-only"]
    gap = head["header"].index("Gap closed (acc.)")
    # "–" only if both score the same; n/a when the gap is within noise (likely for 24 test images)
    assert [r[gap] for r in models] in (["0%", "100%"], ["–", "–"], [GAP_NA, GAP_NA])
    for r in head["rows"]:
        assert all(re.fullmatch(r"-?\d+(\.\d)?%|\d+\.\d°|–|[\w -]+|n/a \(gap too small\)|chance \(constant rotation\)", c)
                   for c in r), r
    acc = p.tables[1]
    assert acc["class"] == "thresholds"
    for col in ("Acc@5°", "Acc@10°", "Acc@15°", "Acc@30°"):
        assert col in acc["header"]


def test_html_per_model_sections_and_per_class_tables(report):
    _, p = report
    h2 = [t for lvl, t in p.headings if lvl == "h2"]
    assert h2 == ["Summary", "source_only", "target_only", "Memorisation check (PixelDA)"]
    per_class = [t for t in p.tables if t["header"][:2] == ["Class", "Images"]]
    assert len(per_class) == 2
    for t in per_class:
        assert [r[0] for r in t["rows"]] == ["class0", "class1", "class2"]
        assert sum(int(r[1]) for r in t["rows"]) == 24


def test_html_images_are_embedded_valid_pngs_and_nothing_is_external(report):
    out, p = report
    assert not p.external
    # comparison + (confusion, angle error, worst cases) x 2 models + 2 memorisation figures
    assert len(p.images) == 1 + 3 * 2 + 2
    for img in p.images:
        src = img["src"]
        assert src.startswith("data:image/png;base64,")
        raw = base64.b64decode(src.split(",", 1)[1], validate=True)
        assert raw[:8] == b"\x89PNG\r\n\x1a\n"
        with Image.open(io.BytesIO(raw)) as im:
            im.verify()
        with Image.open(io.BytesIO(raw)) as im:
            assert im.size[0] > 100 and im.size[1] > 100
        assert img.get("alt")
    assert p.stack == []  # every element closed


def test_markdown_and_metrics_json_beside_it(report):
    out, _ = report
    md = (out / "report.md").read_text()
    links = re.findall(r"!\[[^\]]*\]\((figures/[^)]+\.png)\)", md)
    assert len(links) == 9 and all((out / link).is_file() for link in links)
    assert "| Model | Trained on | Method | Accuracy |" in md
    # strictly valid JSON: no NaN / Infinity tokens
    m = json.loads((out / "metrics.json").read_text(),
                   parse_constant=lambda c: pytest.fail(f"metrics.json contains {c}"))
    assert sorted(m["figures"]) == sorted(link.split("/", 1)[1] for link in links)
    assert m["memorisation"]["n_checked"] == 6
    assert {"sim2real", "torch", "numpy"} <= set(m["versions"])


# ------------------------------------------------------------------------------------------------
# hand-built predictions: chance row and curve, symmetry-aware columns, "gap closed" against noise
# ------------------------------------------------------------------------------------------------

N_TEST = 40  # 20 images per class; class 1 is the "symmetric" one in the hand-made metrics below


def _rot_z(deg: np.ndarray) -> np.ndarray:
    a = np.radians(np.asarray(deg, dtype=np.float64))
    c, s = np.cos(a), np.sin(a)
    R = np.zeros((a.size, 3, 3))
    R[:, 0, 0], R[:, 0, 1], R[:, 1, 0], R[:, 1, 1], R[:, 2, 2] = c, -s, s, c, 1.0
    return R


def _model(name: str, role: str, data, n_correct: int, angles: np.ndarray, sym: bool = True, sym_div: float = 4.0):
    """A ModelResult whose first ``n_correct`` images are classified right and whose rotation errors are ``angles``.

    The predicted rotation is the true one turned by ``angles`` about the model z axis, so the plain error is exactly
    ``angles``. The symmetry-aware keys are written by hand (class 1: the plain error / ``sym_div``), independent of
    what the metrics module computes.
    """
    from sim2real.conventions import matrix_from_quat, quat_from_matrix
    from sim2real.eval.evaluate import ModelResult
    from sim2real.eval.metrics import evaluate_arrays

    n, c = len(data), data.num_classes
    label_pred = data.label.copy()
    wrong = np.arange(n) >= n_correct
    label_pred[wrong] = (data.label[wrong] + 1) % c
    q_pred = quat_from_matrix(matrix_from_quat(data.quat.astype(np.float64)) @ _rot_z(angles))
    m = evaluate_arrays(data.label, label_pred, c, quat_true=data.quat, quat_pred=q_pred, trans_true=data.trans,
                        model_points=data.model_points, diameters=data.diameters)
    assert np.allclose(m["per_sample"]["angle_deg"], angles, atol=1e-6)
    # whatever the metrics module computes, these tests set their own (and sym=False stands for older metrics)
    for d in [m, m["per_sample"], *m["per_class"]]:
        for k in [k for k in d if "sym" in k]:
            del d[k]
    if sym:
        a_sym = np.where(data.label == 1, angles / sym_div, angles)
        ok = m["per_sample"]["correct"]
        m.update(mean_angle_sym_deg=float(a_sym.mean()), median_angle_sym_deg=float(np.median(a_sym)),
                 acc_at_deg_sym={f"{t:g}": float(np.mean(ok & (a_sym < t))) for t in (5, 10, 15, 30)},
                 rot_at_deg_sym={f"{t:g}": float(np.mean(a_sym < t)) for t in (5, 10, 15, 30)}, symmetry_known=True)
        for cls, row in enumerate(m["per_class"]):
            sel = data.label == cls
            row.update(mean_angle_sym_deg=float(a_sym[sel].mean()), median_angle_sym_deg=float(np.median(a_sym[sel])),
                       acc_at_deg_sym={"10": float(np.mean(ok[sel] & (a_sym[sel] < 10)))}, symmetric=cls == 1)
        m["per_sample"]["angle_sym_deg"] = a_sym
    probs = np.eye(c, dtype=np.float32)[label_pred]
    return ModelResult(name=name, path=f"/runs/{name}", kind="train-pose", role=role, info={},
                       pred={"label_pred": label_pred, "quat_pred": q_pred, "probs": probs}, metrics=m)


def _chance(data, angle: float = 90.0) -> dict:
    """A hand-made constant-rotation baseline: every image ``angle`` degrees off (sym: the same)."""
    a = np.full(len(data), angle)
    rot = {f"{t:g}": float(np.mean(a < t)) for t in (5, 10, 15, 30)}
    return {"mean_angle_deg": angle, "median_angle_deg": angle, "mean_angle_sym_deg": angle,
            "median_angle_sym_deg": angle, "rot_at_deg": rot, "rot_at_deg_sym": rot,
            "per_sample": {"angle_deg": a, "angle_sym_deg": a.copy()}}


@pytest.fixture(scope="module")
def test_data(tmp_path_factory):
    from sim2real.data import h5

    d = tmp_path_factory.mktemp("handmade")
    data = h5.read(make_synthetic(d / "test.h5", n=N_TEST, size=16, num_classes=2, seed=5, domain="target"))
    order = np.argsort(data.label, kind="stable")  # class 0 first: n_correct then picks the same images each time
    assert (np.bincount(data.label) > 0).all()
    return data, order


def _write(tmp_path, data, results, chance, name="r"):
    from sim2real.eval.evaluate import choose_references
    from sim2real.eval.metrics import gap_table
    from sim2real.eval.report import write_report

    base, upper, notes = choose_references(results)
    out = tmp_path / name
    m = write_report(out, data, results, base, upper, gap_table(results, base, upper), None, notes,
                     worst_k=4, chance=chance)
    parser = ReportParser()
    parser.feed((out / "report.html").read_text())
    on_disk = json.loads((out / "metrics.json").read_text(),
                         parse_constant=lambda c: pytest.fail(f"metrics.json contains {c}"))
    assert on_disk == m
    return m, parser, (out / "report.md").read_text()


def _alternating(a: float, b: float) -> np.ndarray:
    return np.where(np.arange(N_TEST) % 2 == 0, a, b).astype(np.float64)


def test_gap_significance_matches_hand_computed_standard_errors():
    from sim2real.eval.metrics import gap_is_significant, gap_significance

    src, tgt = np.arange(40) < 10, np.arange(40) < 14  # 25% vs 35% of 40
    se = np.sqrt(0.25 * 0.75 / 40 + 0.35 * 0.65 / 40)  # 0.10186
    g = gap_significance(src, tgt, "proportion")
    assert g["gap"] == pytest.approx(0.10) and g["se"] == pytest.approx(se) and g["threshold"] == pytest.approx(2 * se)
    assert not g["significant"] and g["reason"].startswith("gap too small")
    assert gap_is_significant(src, np.arange(40) < 36, "proportion")  # 25% -> 90%: gap 0.65, 2 SE = 0.167
    a, b = _alternating(80, 100), _alternating(78, 98)  # means 90 and 88, sample variances 400 * 40 / 39 / 4
    se = np.sqrt(2 * (100 * 40 / 39) / 40)  # 2.2646
    g = gap_significance(a, b, "mean")
    assert g["gap"] == pytest.approx(-2.0) and g["se"] == pytest.approx(se) and not g["significant"]
    assert gap_is_significant(a, _alternating(10, 30), "mean")
    assert gap_significance([1.0], [2.0], "mean")["reason"].startswith("too few samples")
    with pytest.raises(ValueError, match="kind"):
        gap_significance(a, b, "median")


def _cells(table: dict, name: str) -> dict:
    row = [r for r in table["rows"] if r[0] == name]
    assert len(row) == 1, (name, table["rows"])
    return dict(zip(table["header"], row[0]))


def test_gap_within_noise_is_na_and_significant_gap_is_a_percentage(tmp_path, test_data):
    data, order = test_data
    data = _reorder(data, order)
    # accuracy 25% -> 35% (within noise, see above); mean angle 90 -> 88 degrees (within noise)
    small = [_model("src", "source-only", data, 10, _alternating(80, 100)),
             _model("tgt", "target-only", data, 14, _alternating(78, 98))]
    m, p, md = _write(tmp_path, data, small, _chance(data), "small")
    head = p.tables[0]
    for name in ("src", "tgt"):
        c = _cells(head, name)
        assert c["Gap closed (acc.)"] == GAP_NA and c["Gap closed (mean angle)"] == GAP_NA
    g = m["gap_closed"]
    assert g["models"]["tgt"]["accuracy"] is None and g["models"]["tgt"]["mean_angle_deg"] is None
    assert g["reasons"]["accuracy"].startswith("gap too small") and g["reasons"]["mean_angle_deg"].startswith("gap too")
    assert g["significance"]["accuracy"]["se"] == pytest.approx(np.sqrt(0.25 * 0.75 / 40 + 0.35 * 0.65 / 40))
    assert g["significance"]["mean_angle_deg"]["se"] == pytest.approx(np.sqrt(2 * (100 * 40 / 39) / 40))
    assert g["noise_z"] == 2.0 and GAP_NA in md
    # accuracy 25% -> 90% and mean angle 90 -> 20 degrees: real gaps, shares as percentages
    big = [_model("src", "source-only", data, 10, _alternating(80, 100)),
           _model("mid", "adapted", data, 23, _alternating(45, 65)),
           _model("tgt", "target-only", data, 36, _alternating(10, 30))]
    m, p, _ = _write(tmp_path, data, big, _chance(data), "big")
    head = p.tables[0]
    assert _cells(head, "src")["Gap closed (acc.)"] == "0%" and _cells(head, "tgt")["Gap closed (acc.)"] == "100%"
    assert _cells(head, "mid")["Gap closed (acc.)"] == "50%"  # (57.5 - 25) / (90 - 25)
    assert _cells(head, "mid")["Gap closed (mean angle)"] == "50%"  # (55 - 90) / (20 - 90)
    assert _cells(head, "mid")["Gap closed (mean angle, sym)"].endswith("%")
    g = m["gap_closed"]
    assert g["models"]["mid"]["accuracy"] == pytest.approx(0.5) and g["reasons"]["accuracy"] is None
    assert g["significance"]["accuracy"]["significant"] and g["significance"]["mean_angle_sym_deg"]["significant"]
    assert g["significance"]["median_angle_deg"] is None  # no noise test for medians: values are not gated


def _reorder(data, order):
    import dataclasses

    per_sample = {k: getattr(data, k)[order] for k in ("rgb", "depth", "mask", "label", "quat", "trans")
                  if getattr(data, k) is not None}
    return dataclasses.replace(data, **per_sample)


def test_chance_row_curve_verdicts_and_sym_columns(tmp_path, test_data):
    from sim2real.eval import plots

    data, order = test_data
    data = _reorder(data, order)
    results = [_model("src", "source-only", data, 20, _alternating(85, 95), sym_div=1.0),
               _model("tgt", "target-only", data, 36, _alternating(10, 14))]
    chance = _chance(data, 90.0)
    m, p, md = _write(tmp_path, data, results, chance)
    head = p.tables[0]
    for col in ("Mean angle err. (sym)", "Median angle err. (sym)", "Gap closed (mean angle, sym)"):
        assert col in head["header"]
    assert head["header"].index("Mean angle err. (sym)") == head["header"].index("Mean angle err.") + 1
    row = _cells(head, CHANCE_NAME)
    assert row["Median angle err."] == "90.0°" and row["Median angle err. (sym)"] == "90.0°" and row["Accuracy"] == "–"
    assert _cells(head, "tgt")["Mean angle err. (sym)"] == f"{np.where(data.label == 1, 3.0, 12.0).mean():.1f}°"
    acc = p.tables[1]
    assert acc["header"][:3] == ["Model", "Acc@5°", "Acc@5° (sym)"]
    assert _cells(acc, CHANCE_NAME)["Acc@30°"] == "0%"
    per_class = [t for t in p.tables if t["header"][:3] == ["Class", "Images", "Symmetric"]]
    assert len(per_class) == 2
    for t in per_class:
        assert [r[2] for r in t["rows"]] == ["no", "yes"]
        for col in ("Mean angle err. (sym)", "Median angle err. (sym)", "Acc@10° (sym)", "Chance median (sym)"):
            assert col in t["header"]
        assert {r[t["header"].index("Chance median (sym)")] for r in t["rows"]} == {"90.0°"}
    # verdicts: a model 5 degrees from chance has not learnt rotation; one at 12 degrees has
    v = {x["name"]: x["rotation_verdict"] for x in m["models"]}
    assert not v["src"]["learnt"] and "within 10° of chance" in v["src"]["text"]
    assert v["tgt"]["learnt"] and v["tgt"]["text"].startswith("rotation learnt: median")
    assert v["tgt"]["basis"] == "symmetry-aware" and v["tgt"]["chance_median_deg"] == 90.0
    text = "\n".join(md.splitlines())
    assert "src: rotation NOT learnt" in text and "tgt: rotation learnt" in text
    # chance in metrics.json (no per-sample arrays) and in both angle-error figures' alt text
    assert m["chance"]["median_angle_deg"] == 90.0 and "per_sample" not in m["chance"]
    assert m["metrics_version"] == 2
    alts = [img["alt"] for img in p.images]
    assert sum("chance baseline" in a for a in alts) == 3  # comparison + one per model
    # the CDF curves themselves: sym-aware solid and plain dashed per model, chance drawn
    fig = plots.angle_error_figure({r.name: r.metrics["per_sample"]["angle_deg"] for r in results},
                                   sym_errors={r.name: r.metrics["per_sample"]["angle_sym_deg"] for r in results},
                                   chance=chance["per_sample"])
    try:
        lines = {ln.get_label(): ln.get_linestyle() for ln in fig.axes[1].get_lines()}
        assert lines[plots.CHANCE_LABEL] == "-" and lines["src"] == "-" and lines["_plain src"] == "--"
        legend = [t.get_text() for t in fig.axes[1].get_legend().get_texts()]
        assert legend == ["src", "tgt", plots.CHANCE_LABEL, "dashed: plain error"]
    finally:
        import matplotlib.pyplot as plt

        plt.close(fig)


def test_old_metrics_without_symmetry_or_chance_still_report(tmp_path, test_data):
    data, order = test_data
    data = _reorder(data, order)
    results = [_model("src", "source-only", data, 10, _alternating(80, 100), sym=False),
               _model("tgt", "target-only", data, 36, _alternating(10, 30), sym=False)]
    m, p, _ = _write(tmp_path, data, results, None)
    head = p.tables[0]
    assert not any("(sym)" in h for h in head["header"]) and CHANCE_NAME not in [r[0] for r in head["rows"]]
    assert _cells(head, "tgt")["Gap closed (acc.)"] == "100%"
    assert m["chance"] is None and all(x["rotation_verdict"] is None for x in m["models"])
    per_class = [t for t in p.tables if t["header"][:2] == ["Class", "Images"]]
    assert per_class and all("Symmetric" not in t["header"] for t in per_class)


def test_unknown_symmetries_hide_sym_columns_and_real_chance_baseline(tmp_path, test_data):
    from sim2real.eval.evaluate import ModelResult, chance_baseline
    from sim2real.eval.metrics import evaluate_arrays

    data, _ = test_data
    q = data.quat.astype(np.float64)
    m = evaluate_arrays(data.label, data.label, data.num_classes, quat_true=q, quat_pred=q)  # perfect, no symmetries
    assert m["symmetry_known"] is False
    perfect = ModelResult(name="perfect", path="/runs/perfect", kind="train-pose", role="target-only", info={},
                          pred={"label_pred": data.label, "quat_pred": q,
                                "probs": np.eye(data.num_classes, dtype=np.float32)[data.label]}, metrics=m)
    chance = chance_baseline(data)
    m_json, p, md = _write(tmp_path, data, [perfect], chance)
    head = p.tables[0]
    assert not any("(sym)" in h for h in head["header"])
    assert _cells(head, CHANCE_NAME)["Median angle err."] == f"{chance['median_angle_deg']:.1f}°"
    assert "no symmetry annotations" in md
    v = m_json["models"][0]["rotation_verdict"]
    assert v["learnt"] and v["basis"] == "plain" and v["median_deg"] == 0.0
