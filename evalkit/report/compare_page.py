"""The page and the Markdown summary of `evalkit compare` (numbers from analysis.compare)."""

from __future__ import annotations

from pathlib import Path

import jinja2

from evalkit.analysis.compare import (
    RunComparison,
    economics_line,
    fmt,
    scored,
    tco_pair,
    to_markdown,
)
from evalkit.money import usd
from evalkit.report import charts
from evalkit.report.build import TEMPLATES, _num, _usd


def render_compare(c: RunComparison, out_dir: Path | str) -> tuple[Path, Path]:
    """Write `compare.html` and `compare.md` into `out_dir`; return both paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES),
                             autoescape=jinja2.select_autoescape(["html", "j2"]),
                             undefined=jinja2.StrictUndefined)
    env.filters["num"] = _num
    env.filters["usd"] = _usd
    chart = charts.step_deltas([f"{r.a} → {r.b}" for r in c.pairs], [r.delta for r in c.pairs],
                               [r.ci_low for r in c.pairs], [r.ci_high for r in c.pairs],
                               metric=c.metric, title="Each pair: B minus A on the shared items"
                               ) if c.pairs else None
    # the Markdown's own formatters, so the page and compare.md print the same figures
    html = env.get_template("compare.html.j2").render(
        c=c, chart=chart, tco_pair=tco_pair, fmt=fmt, economics_line=economics_line, money=usd,
        scored=scored)
    page, md = out_dir / "compare.html", out_dir / "compare.md"
    page.write_text(html, encoding="utf-8")
    md.write_text(to_markdown(c), encoding="utf-8")
    return page, md
