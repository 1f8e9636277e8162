"""The evaluation report: ``metrics.json``, a self-contained ``report.html`` and ``report.md`` (+ ``figures/``).

Layout, for a reader in a hurry: the headline table (all models side by side, share of the gap closed) and the
angle-error CDF first; then notes and metric definitions; then one section per model (per-class table,
confusion matrix, angle-error histogram and CDF, the worst cases); then the memorisation check.

``report.html`` embeds every figure as a base64 PNG data URI (one file to mail or archive); ``report.md``
links the same PNGs under ``figures/``.

Modules::

    write.py      write_report (the entry point), the metrics.json mapping, METRICS_VERSION
    sections.py   the sections in page order (header, summary, per model, memorisation) and their shared context
    tables.py     headline, accuracy-at-thresholds and per-class tables
    verdicts.py   rotation learnt vs chance, gap within noise (the report's judgements)
    document.py   Doc: HTML and Markdown built side by side; the page's CSS
    format.py     cell formatting: pct, deg, json_safe
"""

from sim2real.eval.report.format import deg, json_safe, pct
from sim2real.eval.report.sections import ROLE_HELP
from sim2real.eval.report.verdicts import CHANCE_NAME, GAP_NA, LEARNT_MARGIN_DEG, LEARNT_Z, rotation_verdict
from sim2real.eval.report.write import METRICS_VERSION, write_report

__all__ = [
    "CHANCE_NAME", "GAP_NA", "LEARNT_MARGIN_DEG", "LEARNT_Z", "METRICS_VERSION", "ROLE_HELP", "deg", "json_safe",
    "pct", "rotation_verdict", "write_report",
]
