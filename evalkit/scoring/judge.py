"""The LLM judge: a rubric prompt through any provider, a parsed verdict and a short reason.

For free-text answers that exact match and token F1 grade too harshly. The judge sees the
question, the reference answer(s) and the candidate answer, and must reply with one JSON object
`{"verdict": ..., "reason": ...}`; verdicts map to scores (correct 1, partially_correct 0.5,
incorrect 0). A reply that does not parse is NaN — "not scorable", counted and shown, never
averaged in. Judge calls go through the same runner as the system under test (concurrency,
response cache, journal, budget), into their own journal, and their tokens and cost are kept
apart in `judge.json` so they never inflate the variants' cost per query.

`evalkit judge score RUN_DIR` grades a run's predictions -> `judge_scores.csv` + `judge.json`.
`evalkit judge check LABELS.jsonl` measures the judge against human labels on a sample:
accuracy and Cohen's kappa (scikit-learn), with the unparseable count beside them.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import re
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from evalkit.data.testset import Item, load_testset
from evalkit.providers.base import Provider
from evalkit.run.cache import ResponseCache
from evalkit.run.journal import Journal, latest
from evalkit.run.runner import Job, RunStats, run_jobs
from evalkit.strategies.request import Request

VERDICT_SCORES = {"correct": 1.0, "partially_correct": 0.5, "incorrect": 0.0}

DEFAULT_RUBRIC = """You grade a candidate answer to a question against the reference answer(s).
Verdicts:
- correct: says the same as a reference answer (wording may differ; harmless extra detail is fine).
- partially_correct: contains part of a reference answer but misses or blurs something that matters.
- incorrect: wrong, contradicts the references, answers something else, or says "unknown"
  when a reference answer exists.
Reply with exactly one JSON object and nothing else:
{"verdict": "correct" | "partially_correct" | "incorrect", "reason": "<one short sentence>"}"""


@dataclass(frozen=True)
class Verdict:
    verdict: str | None  # None: the judge's reply could not be parsed
    score: float         # NaN when unparseable
    reason: str


@dataclass(frozen=True)
class JudgeCase:
    """One answer to grade. `variant` groups cases; `label` is a human verdict (for check)."""

    id: str
    question: str
    references: tuple[str, ...]
    answer: str
    variant: str = "judge"
    label: str | None = None


def judge_request(case: JudgeCase, *, rubric: str = DEFAULT_RUBRIC,
                  model: str | None = None) -> Request:
    refs = "\n".join(f"- {r}" for r in case.references) or "- (none given)"
    text = (f"Question: {case.question}\n\nReference answer(s):\n{refs}\n\n"
            f"Candidate answer: {case.answer}")
    return Request(task_type="judge", instructions=rubric, input=text, model=model)


_JSON_OBJECT = re.compile(r"\{.*?\}", re.S)
_LABELLED = re.compile(r"verdict\s*[:=]\s*\**\s*\"?([a-z_ ]+)", re.I)


def parse_verdict(text: str | None, scores: dict[str, float] = VERDICT_SCORES) -> Verdict:
    """The verdict in a judge's reply: a JSON object, else a `verdict: X` line, else NaN."""
    if not text:
        return Verdict(None, math.nan, "")
    for blob in _JSON_OBJECT.findall(text):
        try:
            data = json.loads(blob)
        except json.JSONDecodeError:
            continue
        if isinstance(data, dict):
            verdict = _normal(data.get("verdict"))
            if verdict in scores:
                return Verdict(verdict, scores[verdict], str(data.get("reason", ""))[:300])
    m = _LABELLED.search(text)
    if m and _normal(m.group(1)) in scores:
        verdict = _normal(m.group(1))
        reason = re.search(r"reason\s*[:=]\s*(.+)", text, re.I)
        return Verdict(verdict, scores[verdict], reason.group(1).strip()[:300] if reason else "")
    return Verdict(None, math.nan, "")


def _normal(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    return value.strip().lower().replace(" ", "_").replace("-", "_")


@dataclass
class Judged:
    case: JudgeCase
    verdict: Verdict
    error: str | None = None  # the judge call failed (recorded per case, like the runner does)


def run_judge(cases: Sequence[JudgeCase], provider: Provider, *, journal_path: Path,
              rubric: str = DEFAULT_RUBRIC, model: str | None = None,
              cache: ResponseCache | None = None, concurrency: int = 8,
              max_cost_usd: float | None = None, progress: bool = False,
              ) -> tuple[list[Judged], RunStats, list[Any]]:
    """Judge every case not yet in the journal; return all cases' verdicts and the stats."""
    journal = Journal(journal_path)
    done = {(p.variant, p.item_id) for p in latest(journal.read()) if p.error_class is None}
    by_key = {(c.variant, c.id): c for c in cases}
    jobs = [Job(c.variant, Item(c.id, c.question, list(c.references)),
                lambda _it, c=c: judge_request(c, rubric=rubric, model=model))
            for c in cases if (c.variant, c.id) not in done]
    stats = asyncio.run(run_jobs(jobs, total=len(jobs), provider=provider, cache=cache,
                                 journal=journal, concurrency=concurrency,
                                 max_cost_usd=max_cost_usd, progress=progress))
    preds = [p for p in latest(Journal(journal_path).read()) if (p.variant, p.item_id) in by_key]
    out = []
    for p in preds:
        case = by_key[(p.variant, p.item_id)]
        if p.error_class is not None:
            out.append(Judged(case, Verdict(None, math.nan, ""), f"{p.error_class}: {p.error}"))
        else:
            out.append(Judged(case, parse_verdict(p.output)))
    return out, stats, preds


# --- grading a run ----------------------------------------------------------------------------

def cases_from_run(run_dir: Path, variants: Sequence[str] | None = None) -> list[JudgeCase]:
    """A case per successful prediction of the run (its latest attempt), with its references."""
    run = json.loads((Path(run_dir) / "run.json").read_text())
    testset = load_testset(run["config"]["testset"])
    items = {it.id: it for it in testset.test}
    cases = []
    for p in latest(Journal(Path(run_dir) / "predictions.jsonl").read()):
        if p.error_class is not None or p.output is None or p.item_id not in items:
            continue
        if variants and p.variant not in variants:
            continue
        item = items[p.item_id]
        cases.append(JudgeCase(p.item_id, item.input, tuple(item.references), p.output,
                               variant=p.variant))
    return cases


def score_run(run_dir: Path | str, provider: Provider, *, model: str | None = None,
              rubric: str = DEFAULT_RUBRIC, cache: ResponseCache | None = None,
              variants: Sequence[str] | None = None, concurrency: int = 8,
              max_cost_usd: float | None = None, progress: bool = False) -> dict[str, Any]:
    """Grade RUN_DIR's answers; write judge_scores.csv and judge.json; return the latter."""
    run_dir = Path(run_dir)
    cases = cases_from_run(run_dir, variants)
    judged, stats, preds = run_judge(cases, provider, journal_path=run_dir / "judge_journal.jsonl",
                                     rubric=rubric, model=model, cache=cache,
                                     concurrency=concurrency, max_cost_usd=max_cost_usd,
                                     progress=progress)
    rows = [{"run": run_dir.name, "variant": j.case.variant, "item_id": j.case.id,
             "metric": "judge", "value": j.verdict.score, "verdict": j.verdict.verdict,
             "reason": j.verdict.reason, "error": j.error} for j in judged]
    table = pd.DataFrame(rows, columns=["run", "variant", "item_id", "metric", "value",
                                        "verdict", "reason", "error"])
    table.to_csv(run_dir / "judge_scores.csv", index=False)
    per_variant = {}
    for variant, group in table.groupby("variant", sort=False):
        values = group["value"].astype(float)
        per_variant[variant] = {"mean": float(values.mean()) if values.notna().any() else None,
                                "n": int(values.notna().sum()), "n_nan": int(values.isna().sum()),
                                "unparseable": int((group["error"].isna()
                                                    & values.isna()).sum()),
                                "errors": int(group["error"].notna().sum())}
    summary = {"model": model or (provider.model or None), "rubric": rubric,
               "variants": per_variant, "judge_cost": _cost(preds, stats)}
    (run_dir / "judge.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _cost(preds: list[Any], stats: RunStats) -> dict[str, Any]:
    """The judge's own tokens and dollars: never part of the variants' cost."""
    ok = [p for p in preds if p.error_class is None]
    return {"calls": len(ok), "input_tokens": sum(p.input_tokens for p in ok),
            "output_tokens": sum(p.output_tokens for p in ok),
            "notional_usd": sum(p.cost_usd for p in ok),
            "spent_usd_this_session": stats.spent_usd}


# --- calibration against human labels ---------------------------------------------------------

@dataclass
class CheckResult:
    n: int
    n_scored: int
    n_unparseable: int
    n_errors: int
    accuracy: float
    kappa: float
    confusion: dict[str, dict[str, int]]
    judge_cost: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_labels(path: Path | str) -> list[JudgeCase]:
    """Human-labelled answers, JSONL: id, question, reference(s), answer, label."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: labels file not found")
    cases = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{n}: invalid JSON: {exc}") from exc
        refs = row.get("references", row.get("reference", row.get("expected")))
        refs = [refs] if isinstance(refs, str) else refs
        for field, value in (("question", row.get("question", row.get("input"))),
                             ("references", refs), ("answer", row.get("answer")),
                             ("label", row.get("label"))):
            if value is None or value == "" or value == []:
                raise ValueError(f"{path}:{n}: field '{field}' is required")
        label = _human_label(row["label"])
        if label not in VERDICT_SCORES:
            raise ValueError(f"{path}:{n}: field 'label' must be one of "
                             f"{', '.join(VERDICT_SCORES)} (or true/false), got {row['label']!r}")
        cases.append(JudgeCase(str(row.get("id", n)), row.get("question", row.get("input")),
                               tuple(str(r) for r in refs), str(row["answer"]), label=label))
    return cases


def _human_label(value: Any) -> str | None:
    if isinstance(value, bool) or value in (0, 1):
        return "correct" if value else "incorrect"
    return _normal(value)


def check(cases: Sequence[JudgeCase], provider: Provider, *, model: str | None = None,
          rubric: str = DEFAULT_RUBRIC, cache: ResponseCache | None = None,
          sample: int | None = None, seed: int = 0, concurrency: int = 8,
          max_cost_usd: float | None = None) -> CheckResult:
    """Agreement of the judge with the human labels: accuracy and Cohen's kappa."""
    from sklearn.metrics import accuracy_score, cohen_kappa_score

    cases = list(cases)
    if sample is not None and sample < len(cases):
        cases = random.Random(seed).sample(cases, sample)
    with tempfile.TemporaryDirectory() as tmp:
        judged, stats, preds = run_judge(cases, provider, journal_path=Path(tmp) / "j.jsonl",
                                         rubric=rubric, model=model, cache=cache,
                                         concurrency=concurrency, max_cost_usd=max_cost_usd)
    scored = [j for j in judged if j.verdict.verdict is not None]
    y_true = [j.case.label for j in scored]
    y_pred = [j.verdict.verdict for j in scored]
    confusion: dict[str, dict[str, int]] = {}
    for t, p in zip(y_true, y_pred, strict=True):
        confusion.setdefault(t, {}).setdefault(p, 0)
        confusion[t][p] += 1
    accuracy = float(accuracy_score(y_true, y_pred)) if scored else math.nan
    kappa = (float(cohen_kappa_score(y_true, y_pred))
             if scored and len(set(y_true) | set(y_pred)) > 1 else math.nan)
    errors = sum(j.error is not None for j in judged)
    return CheckResult(n=len(cases), n_scored=len(scored),
                       n_unparseable=len(judged) - len(scored) - errors, n_errors=errors,
                       accuracy=accuracy, kappa=kappa, confusion=confusion,
                       judge_cost=_cost(preds, stats))
