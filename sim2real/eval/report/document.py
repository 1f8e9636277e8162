"""The report document: HTML and Markdown built side by side, one call per element; the HTML page around it."""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Sequence

from sim2real.utils import atomic_write_bytes

CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,Arial,sans-serif;margin:24px auto;max-width:1180px;color:#222;line-height:1.4}
h1{font-size:1.6em;margin-bottom:0.2em} h2{border-bottom:2px solid #ddd;padding-bottom:4px;margin-top:1.8em}
h3{margin-top:1.4em} .sub{color:#666;font-size:0.9em}
table{border-collapse:collapse;margin:10px 0;font-size:0.9em} th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}
th{background:#f2f4f7} td:first-child,th:first-child{text-align:left} tr:nth-child(even) td{background:#fafafa}
table.headline td,table.headline th{font-size:1.02em;padding:6px 10px} .best{font-weight:bold;background:#e6f4ea!important}
.warn{background:#fff4e5;border-left:4px solid #f0a020;padding:8px 12px;margin:10px 0}
.note{background:#eef4fb;border-left:4px solid #4a90d9;padding:8px 12px;margin:10px 0}
img{max-width:100%;height:auto;display:block;margin:8px 0} details{margin:10px 0} code{background:#f3f3f3;padding:0 3px}
"""
TITLE = "sim2real evaluation report"


class Doc:
    """Builds the HTML and Markdown versions of the report side by side.

    Figures are written to ``out_dir/figures/`` as they are added (Markdown links them) and embedded in the HTML
    as base64 data URIs.
    """

    def __init__(self, out_dir: Path, title: str = TITLE) -> None:
        self.title = title
        self.html: list[str] = []
        self.md: list[str] = []
        self.fig_dir = out_dir / "figures"
        self.figures: list[str] = []

    def heading(self, level: int, text: str, anchor: str | None = None) -> None:
        a = f' id="{html.escape(anchor)}"' if anchor else ""
        self.html.append(f"<h{level}{a}>{html.escape(text)}</h{level}>")
        self.md.append(f"\n{'#' * level} {text}\n")

    def para(self, text: str, cls: str | None = None) -> None:
        c = f' class="{cls}"' if cls else ""
        self.html.append(f"<div{c}>{html.escape(text)}</div>" if cls else f"<p>{html.escape(text)}</p>")
        prefix = "> " if cls in ("warn", "note") else ""
        self.md.append(f"{prefix}{'**Warning:** ' if cls == 'warn' else ''}{text}\n")

    def bullets(self, items: Sequence[str], cls: str | None = None) -> None:
        if not items:
            return
        c = f' class="{cls}"' if cls else ""
        self.html.append(f"<div{c}><ul>" + "".join(f"<li>{html.escape(i)}</li>" for i in items) + "</ul></div>")
        self.md.append("\n".join(f"- {i}" for i in items) + "\n")

    def table(self, header: Sequence[str], rows: Sequence[Sequence[str]], cls: str | None = None,
              bold: set[tuple[int, int]] | None = None) -> None:
        bold = bold or set()
        c = f' class="{cls}"' if cls else ""
        h = "".join(f"<th>{html.escape(x)}</th>" for x in header)
        body = "".join("<tr>" + "".join(
            f'<td class="best">{html.escape(v)}</td>' if (i, j) in bold else f"<td>{html.escape(v)}</td>"
            for j, v in enumerate(r)) + "</tr>" for i, r in enumerate(rows))
        self.html.append(f"<table{c}><thead><tr>{h}</tr></thead><tbody>{body}</tbody></table>")
        esc = lambda s: str(s).replace("|", "\\|")  # noqa: E731
        lines = ["| " + " | ".join(esc(x) for x in header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
        for i, r in enumerate(rows):
            lines.append("| " + " | ".join(f"**{esc(v)}**" if (i, j) in bold else esc(v) for j, v in enumerate(r)) + " |")
        self.md.append("\n".join(lines) + "\n")

    def figure(self, png: bytes, filename: str, alt: str) -> None:
        self.fig_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(self.fig_dir / filename, png)
        self.figures.append(filename)
        b64 = base64.b64encode(png).decode("ascii")
        self.html.append(f'<img src="data:image/png;base64,{b64}" alt="{html.escape(alt)}">')
        self.md.append(f"![{alt}](figures/{filename})\n")

    def raw_html(self, s: str) -> None:
        self.html.append(s)

    def html_page(self) -> str:
        """The self-contained ``report.html``."""
        return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(self.title)}</title>"
                f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><style>{CSS}</style></head>"
                f"<body>\n" + "\n".join(self.html) + "\n</body></html>\n")

    def markdown(self) -> str:
        """``report.md``."""
        return "\n".join(self.md)
