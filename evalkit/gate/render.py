"""How a gate report is shown: a console table, a Markdown summary, JUnit XML.

Console and Markdown both lead with the verdict and the failures (each a sentence quoting its
numbers), then the full table, so a CI log or a PR's step summary answers "what broke" first.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from pathlib import Path

from evalkit.gate.check import Check, GateReport, Tolerances
from evalkit.money import usd

COLUMNS = ("status", "test set", "variant", "check", "baseline", "run", "change", "allowed",
           "paired test")
MARK = {"pass": "ok", "fail": "FAIL", "warn": "warn"}
SHORT = {"McNemar exact": "McNemar", "paired t": "t", "clustered paired t": "clustered t"}


def rows(checks: list[Check], tolerances: dict[str, Tolerances]) -> list[tuple[str, ...]]:
    out = []
    for c in checks:
        tol = tolerances.get(c.testset, Tolerances())
        p = c.paired
        out.append((MARK[c.status], c.testset, c.variant, c.check, _value(c.kind, c.baseline),
                    _value(c.kind, c.run), _change(c), _allowed(c, tol),
                    f"{SHORT.get(p.test, p.test)} p={p.p_value:.3g} n={p.n}" if p else ""))
    return out


def console(report: GateReport) -> str:
    table = [COLUMNS, *rows(report.checks, report.tolerances)]
    widths = [max(len(r[i]) for r in table) for i in range(len(COLUMNS))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip()
             for r in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append("")
    lines += [f"{MARK[c.status]} {c.testset} / {c.variant}: {c.reason}"
              for c in report.checks if c.status == "warn"]
    lines += [f"FAIL {c.testset} / {c.variant}: {c.reason}" for c in report.failures]
    lines.append(verdict(report))
    return "\n".join(lines)


def verdict(report: GateReport) -> str:
    n, f = len(report.checks), len(report.failures)
    sets = ", ".join(sorted(report.runs)) or "no runs"
    if f:
        return f"gate: FAIL - {f} of {n} checks failed ({sets})"
    warns = sum(c.status == "warn" for c in report.checks)
    return f"gate: PASS - {n} checks ({sets})" + (f", {warns} warnings" if warns else "")


def markdown(report: GateReport, *, testset: str | None = None) -> str:
    """The whole report, or one test set's part of it (for that run folder's gate.md)."""
    checks = [c for c in report.checks if testset is None or c.testset == testset]
    fails = [c for c in checks if c.status == "fail"]
    warns = [c for c in checks if c.status == "warn"]
    icon, word = ("❌", "FAIL") if fails else ("✅", "PASS")
    scope = f" ({testset})" if testset else ""
    out = [f"## {icon} evalkit gate: {word}{scope}", "",
           ("overall " if testset else "") + verdict(report), ""]
    if fails:
        out += ["### Failures", ""] + [f"- **{c.testset} / {c.variant}** — {_md(c.reason)}"
                                       for c in fails] + [""]
    if warns:
        out += ["### Warnings", ""] + [f"- {c.testset} / {c.variant} — {_md(c.reason)}"
                                       for c in warns] + [""]
    for name in sorted({c.testset for c in checks}):
        mine = [c for c in checks if c.testset == name]
        run = report.runs.get(name)
        out += [f"<details{' open' if any(c.status == 'fail' for c in mine) else ''}>"
                f"<summary>{name}" + (f" — run <code>{run.resolve().name}</code>" if run else "")
                + "</summary>", "",
                "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
        out += ["| " + " | ".join(_md(x) for x in r) + " |"
                for r in rows(mine, report.tolerances)]
        out += ["", "</details>", ""]
    return "\n".join(out)


# what XML 1.0 cannot hold (most C0 controls, lone surrogates, U+FFFE/FFFF): ElementTree
# writes them raw and every JUnit parser then rejects the whole file
_NOT_XML = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _xml(text: str) -> str:
    """`text` with each character XML cannot hold shown as its escape (`\\x1b`)."""
    return _NOT_XML.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def junit(report: GateReport) -> str:
    """One <testsuite> per test set, one <testcase> per check; failures carry the reason.
    Every name and reason goes through `_xml`, so the file parses whatever they hold."""
    suites = ET.Element("testsuites", name="evalkit gate", tests=str(len(report.checks)),
                        failures=str(len(report.failures)))
    for name in sorted({c.testset for c in report.checks}):
        mine = [c for c in report.checks if c.testset == name]
        suite = ET.SubElement(suites, "testsuite", name=_xml(name), tests=str(len(mine)),
                              failures=str(sum(c.status == "fail" for c in mine)))
        for c in mine:
            case = ET.SubElement(suite, "testcase", classname=_xml(f"evalkit.gate.{name}"),
                                 name=_xml(f"{c.variant} {c.check}"))
            if c.status == "fail":
                ET.SubElement(case, "failure", message=_xml(c.reason), type="regression")
            else:
                ET.SubElement(case, "system-out").text = _xml(f"{c.status}: {c.reason}")
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, "unicode") + "\n"


def write_markdown(report: GateReport, *, step_summary: Path | None) -> list[Path]:
    """gate.md into every run folder (its own test set's part), and the whole report appended
    to the GitHub step summary file when one is given. Returns the files written."""
    written = []
    for name, run_dir in report.runs.items():
        path = run_dir / "gate.md"
        path.write_text(markdown(report, testset=name) + "\n", encoding="utf-8")
        written.append(path)
    if step_summary is not None:
        with step_summary.open("a", encoding="utf-8") as fh:
            fh.write(markdown(report) + "\n")
        written.append(step_summary)
    return written


def _value(kind: str, x: float | None) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if kind == "cost":
        return usd(x)
    if kind == "latency":
        return f"{x * 1000:.1f} ms"
    if kind == "errors":
        return f"{x:.1%}"
    if kind == "items":
        return str(int(x))
    return f"{x:.4f}"


def _change(c: Check) -> str:
    if c.baseline is None or c.run is None or math.isnan(c.baseline) or math.isnan(c.run):
        return ""
    d = c.run - c.baseline
    if c.kind in ("cost", "latency"):
        return f"{d / c.baseline:+.0%}" if c.baseline > 0 else ""
    if c.kind == "errors":
        return f"{d * 100:+.1f} pts"
    if c.kind == "items":
        return f"{int(d):+d}"
    return f"{d:+.4f}"


def _allowed(c: Check, tol: Tolerances) -> str:
    if c.kind == "metric" and c.limit is not None:
        return f"-{c.limit:.4f}" + (" & sig." if tol.require_significance else "")
    if c.kind == "cost":
        slack = f" & {usd(tol.cost_slack_usd)}" if tol.cost_slack_usd else ""
        return f"+{tol.max_cost_increase:.0%}{slack}"
    if c.kind == "latency":
        slack = f" & {tol.latency_slack_s * 1000:.0f} ms" if tol.latency_slack_s else ""
        return f"+{tol.max_latency_increase:.0%}{slack}"
    if c.kind == "errors":
        return f"+{tol.max_error_rate_increase:.1%}"
    return ""


def _md(text: str) -> str:
    return text.replace("|", "\\|")
