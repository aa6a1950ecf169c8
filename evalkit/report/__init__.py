"""The HTML report: `render_report(run_dir)` writes one self-contained index.html."""

from evalkit.report.build import render_report

__all__ = ["render_report"]
