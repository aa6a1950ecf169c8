"""Build the self-contained HTML report of a run folder.

Reads only the run folder — summary.json, scores.csv, predictions.jsonl, items.jsonl, run.json —
and never calls a model, so a report can be re-rendered at any time. Everything shown is
escaped: the template autoescapes, and the item explorer's data is embedded as JSON with `<`,
`>` and `&` written as \\u escapes and rendered by the page's script through `textContent` only.
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import Any

import jinja2
import pandas as pd

from evalkit.analysis.epochs import item_epochs
from evalkit.analysis.summary import RunData, load_run
from evalkit.analysis.verdicts import usd
from evalkit.report import charts, messages
from evalkit.report.breakdowns import breakdowns_context
from evalkit.report.explorer import embed_json, explorer_data, is_wrong, judge_reasons
from evalkit.run.journal import Journal, latest
from evalkit.run.runfolder import RunFolderError, read_items, read_json, read_scores
from evalkit.tasks import TASK_TYPES
from evalkit.tasks.judged import JUDGE_GROUNDED_METRIC, JUDGE_METRIC

TEMPLATES = Path(__file__).parent / "templates"


def render_report(run_dir: Path | str, *, out: Path | str | None = None) -> Path:
    """Write `index.html` (or `out`) for the run in `run_dir`; return its path."""
    run_dir = Path(run_dir)
    ctx = build_context(run_dir)
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES),
                             autoescape=jinja2.select_autoescape(["html", "j2"]),
                             undefined=jinja2.StrictUndefined)
    env.filters["num"] = _num
    env.filters["usd"] = _usd
    env.globals["judge_metric"] = JUDGE_METRIC
    html = env.get_template("report.html.j2").render(**ctx)
    path = Path(out) if out else run_dir / "index.html"
    path.write_text(html, encoding="utf-8")
    return path


def build_context(run_dir: Path) -> dict[str, Any]:
    summary = read_json(run_dir / "summary.json")
    run = read_json(run_dir / "run.json")
    try:  # the analysis' view of the folder (breakdowns need it); read once, shared
        data: RunData | None = load_run(run_dir)
    except ValueError:  # a folder the analysis cannot read: the rest of the page still can
        data = None
    scores = data.scores if data else read_scores(run_dir / "scores.csv")
    preds = data.predictions if data else latest(Journal(run_dir / "predictions.jsonl").read())
    items = read_items(run_dir / "items.jsonl")
    if not isinstance(summary.get("variants"), dict):
        raise RunFolderError(run_dir / "summary.json", "must map variant names to results",
                             field="variants")
    primary = summary.get("primary_metric", "accuracy")
    ladder = summary.get("ladder") or list(summary["variants"])
    steps = summary.get("steps") or []
    return {
        "summary": summary,
        "run": run,
        "primary": primary,
        "ladder": ladder,
        "steps": steps,
        "variant_rows": _variant_rows(summary, ladder, primary),
        "metric_names": _metric_names(summary, ladder),
        "charts": _charts(summary, ladder, primary, steps),
        "break_even": [break_even_text(s, summary) for s in steps],
        "rag": _rag_diagnostics(scores, ladder, primary),
        "errors_by_class": _errors_by_class(preds),
        "explorer_json": embed_json(_explorer(run_dir, run, items, preds, scores, ladder,
                                              primary, data)),
        "n_items": len(items),
        "breakdowns": breakdowns_context(data, summary, ladder),
        "economics": summary.get("economics") or {},
        "spec_rows": _spec_rows(summary, run, ladder),
        "epochs": summary.get("epochs"),
        "judge": _judge(summary),
    }


def _judge(summary: dict) -> dict[str, Any] | None:
    """summary.json's `judge` section as the report shows it, under the variants table that
    holds the judge's scores: what its calls cost (its own, in no variant's $/query or TCO),
    and how far to trust it (its agreement with the reference metric, and with people when
    the config named human labels). None when the run was not judged."""
    j = summary.get("judge")
    if not isinstance(j, dict):
        return None
    human = j.get("human_agreement") if isinstance(j.get("human_agreement"), dict) else None
    costs = [(key, label, cost) for key, label, cost in (
        ("grading", f"grading the answers ({JUDGE_METRIC})", j.get("cost")),
        ("groundedness", f"groundedness verdicts ({JUDGE_GROUNDED_METRIC})",
         j.get("groundedness_cost")),
        ("human-check", "the check against human labels", (human or {}).get("judge_cost")))
        if isinstance(cost, dict)]
    total = sum(c.get("notional_usd") or 0.0 for _, _, c in costs)
    agreement = j.get("agreement") if isinstance(j.get("agreement"), dict) else {}
    return {"model": j.get("model"), "rubric_sha256": j.get("rubric_sha256"), "costs": costs,
            "total_usd": total, "agreement": agreement, "human": human,
            "not_judged": j.get("not_judged") or 0,
            "stopped": j.get("stopped") if isinstance(j.get("stopped"), dict) else None}


def _explorer(run_dir: Path, run: dict, items: list[dict], preds, scores: pd.DataFrame,
              ladder: list[str], primary: str, run_data: RunData | None) -> dict[str, Any]:
    """The explorer's data with the messages each variant sent, as the run recorded them, and
    each item's scores per epoch after --epochs."""
    by_epoch = run_data.epoch_scores if run_data is not None else None
    epochs = item_epochs(by_epoch, metric=primary) if by_epoch is not None else None
    explain = None
    if run_data is not None:
        task = run_data.task_view()
        kind = TASK_TYPES.find(task.type)
        if kind is not None and kind.explain is not None:
            def explain(expected, output):  # the task type's, for this run's task
                return kind.explain(expected, output, task)
    data = explorer_data(items, preds, scores, ladder, primary, reasons=judge_reasons(run_dir),
                         epochs=epochs, explain=explain)
    data["msg"] = messages.recorded(run_dir, run, ladder, items, preds).as_json()
    return data


def _spec_rows(summary: dict, run: dict, ladder: list[str]) -> list[dict]:
    """Per variant its preset and every setting it has (the recorded spec, empty ones out)."""
    specs = run.get("variant_specs") or {}
    rows = []
    for name in ladder:
        spec = (summary["variants"].get(name) or {}).get("spec") or specs.get(name)
        if not isinstance(spec, dict):
            continue
        settings = []
        for key, value in spec.items():
            if key in ("name", "kind") or value is None or value is False or value == "" \
                    or (key in ("few_shot_k", "rag_k") and not value):
                continue
            if key == "few_shot_selection" and not spec.get("few_shot_k"):
                continue
            text = str(value)
            settings.append((key, text if len(text) <= 120 else text[:117] + "…"))
        rows.append({"name": name, "kind": spec.get("kind") or "", "settings": settings})
    return rows


def _metric_names(summary: dict, ladder: list[str]) -> list[str]:
    names: list[str] = []
    for v in ladder:
        for m in summary["variants"].get(v, {}).get("metrics", {}):
            if m not in names:
                names.append(m)
    return names


def _variant_rows(summary: dict, ladder: list[str], primary: str) -> list[dict]:
    rows = []
    for name in ladder:
        v = summary["variants"].get(name, {})
        cost = v.get("cost", {})
        pm = v.get("metrics", {}).get(primary, {})
        per_query = cost.get("per_query_usd")
        mean = pm.get("mean")
        per_1k_correct = (1000 * per_query / mean
                          if _ok(per_query) and _ok(mean) and mean > 0 else None)
        rows.append({"name": name, "metrics": v.get("metrics", {}), "latency": v.get("latency", {}),
                     "tokens": v.get("tokens", {}), "cost": cost, "calls": v.get("calls", {}),
                     "per_1k_correct": per_1k_correct,
                     "not_applicable": v.get("not_applicable", {}),
                     "answerability": v.get("answerability")})  # QA with unanswerable items
    return rows


def _charts(summary: dict, ladder: list[str], primary: str,
            steps: list[dict]) -> dict[str, charts.Chart]:
    vs = [summary["variants"].get(n, {}) for n in ladder]
    pm = [v.get("metrics", {}).get(primary, {}) for v in vs]
    cost = [v.get("cost", {}) for v in vs]
    out = {"quality_cost": charts.quality_vs_cost(
        ladder, [c.get("per_query_usd") for c in cost], [m.get("mean") for m in pm],
        [m.get("ci_low") for m in pm], [m.get("ci_high") for m in pm], metric=primary)}
    econ = summary.get("economics") or {}
    if all("setup_usd" in c for c in cost):
        out["tco"] = charts.tco_vs_volume(
            ladder, [c.get("setup_usd") for c in cost],
            [c.get("fixed_monthly_usd", 0) for c in cost],
            [c.get("per_query_usd") for c in cost],
            horizon_months=float(econ.get("horizon_months", 12)),
            break_evens=[charts.BreakEven(f"{s['from']} → {s['to']}",
                                          s.get("break_even_queries_per_month"),
                                          ladder.index(s["from"]))
                         for s in steps if s["from"] in ladder],
            volume_now=econ.get("queries_per_month"))
    if steps:
        out["deltas"] = charts.step_deltas(
            [f"{s['from']} → {s['to']}" for s in steps], [s.get("delta") for s in steps],
            [s.get("ci_low") for s in steps], [s.get("ci_high") for s in steps], metric=primary)
    return out


def break_even_text(step: dict, summary: dict) -> tuple[str, str]:
    """The steps table's break-even cell and its tooltip: the volume as the TCO chart labels
    it, or why there is none (one rung costs less, or more, at every volume)."""
    v = step.get("break_even_queries_per_month")
    if _ok(v):
        return charts.volume(v), f"{step['to']} and {step['from']} cost the same at this volume"
    a = (summary["variants"].get(step["from"]) or {}).get("cost") or {}
    b = (summary["variants"].get(step["to"]) or {}).get("cost") or {}
    d = step.get("delta_tco_usd")
    if not all(_ok(x.get("per_query_usd")) for x in (a, b)) or not _ok(d):
        return "–", "costs unknown"
    if d == 0:
        return "none", f"{step['to']} and {step['from']} cost the same at every volume"
    which = "more" if d > 0 else "less"
    return "none", f"{step['to']} costs {which} than {step['from']} at every volume"


def _rag_diagnostics(scores: pd.DataFrame, ladder: list[str], primary: str) -> list[dict]:
    """Per retrieval rung: recall@k, MRR, and wrong answers split by whether gold was retrieved."""
    out = []
    for name in ladder:
        mine = scores[scores["variant"] == name]
        wide = mine.pivot_table(index="item_id", columns="metric", values="value", aggfunc="first")
        if "recall_at_k" not in wide or primary not in wide:
            continue
        both = wide[[primary, "recall_at_k"]].dropna()
        wrong = both[both[primary].map(lambda v: is_wrong(v, primary))]
        out.append({
            "variant": name,
            "recall_at_k": float(wide["recall_at_k"].mean()),
            "mrr": float(wide["mrr"].mean()) if "mrr" in wide else math.nan,
            "n": int(wide["recall_at_k"].notna().sum()),
            "wrong": len(wrong),
            "generation_failures": int((wrong["recall_at_k"] > 0).sum()),
            "retrieval_failures": int((wrong["recall_at_k"] == 0).sum()),
        })
    return out


def _errors_by_class(preds) -> list[tuple[str, str, int]]:
    counts = Counter((p.variant, p.error_class) for p in preds if p.error_class)
    return [(v, c, n) for (v, c), n in sorted(counts.items())]


def _ok(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def _num(x, digits: int = 3) -> str:
    return f"{x:.{digits}f}" if _ok(x) else "–"


def _usd(x) -> str:
    """The same dollar format as the verdict sentences above the tables."""
    return usd(x) if _ok(x) else "–"
