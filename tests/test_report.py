"""The HTML report's structure: tables, headings, embedded PNGs that decode, no external resources; report.md and
metrics.json beside it. (The look was checked in headless Chromium by hand; this test guards the structure.)"""

from __future__ import annotations

import base64
import io
import json
import re
from html.parser import HTMLParser

import pytest
from PIL import Image

from sim2real.cli import main
from sim2real.config import load_config
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
    assert head["header"][:3] == ["Model", "Trained on", "Accuracy"]
    for col in ("Mean angle err.", "Median angle err.", "Acc@5°", "Acc@10°", "Acc@15°", "Acc@30°", "ADD recall*",
                "ADD-S recall*", "Gap closed (acc.)"):
        assert col in head["header"]
    assert [r[0] for r in head["rows"]] == ["source_only", "target_only"]
    assert [r[1] for r in head["rows"]] == ["source-only", "target-only"]
    gap = head["header"].index("Gap closed (acc.)")
    assert [r[gap] for r in head["rows"]] in (["0%", "100%"], ["–", "–"])  # "–" only if both score the same
    for r in head["rows"]:
        assert all(re.fullmatch(r"-?\d+(\.\d)?%|\d+\.\d°|–|[\w-]+", c) for c in r), r


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
    assert "| Model | Trained on | Accuracy |" in md
    # strictly valid JSON: no NaN / Infinity tokens
    m = json.loads((out / "metrics.json").read_text(),
                   parse_constant=lambda c: pytest.fail(f"metrics.json contains {c}"))
    assert sorted(m["figures"]) == sorted(link.split("/", 1)[1] for link in links)
    assert m["memorisation"]["n_checked"] == 6
    assert {"sim2real", "torch", "numpy"} <= set(m["versions"])
