"""The LLM judge: a rubric prompt through any provider, a parsed verdict and a short reason.

For free-text answers that exact match and token F1 grade too harshly. The judge sees the
question, the reference answer(s) and the candidate answer, and must reply with one JSON object
`{"verdict": ..., "reason": ...}`; verdicts map to scores (correct 1, partially_correct 0.5,
incorrect 0). A reply that does not parse is NaN — "not scorable", counted and shown, never
averaged in. Judge calls go through the same runner as the system under test (concurrency,
response cache, journal, budget), into their own journal, and their tokens and cost are kept
apart in `judge.json` so they never inflate the variants' cost per query.

As a scorer: the judge's score is the metric `judge` (evalkit.tasks.judged), written to
scores.csv from the run folder's judge journal like any metric, so verdicts, the report and the
gate can use it (`metrics.primary: judge`). A run grades itself when the experiment config has
a `judge:` section with `score: true`, or task.yaml names the metric; `evalkit judge score
RUN_DIR` grades a finished run -> `judge_scores.csv` (verdicts and reasons) + `judge.json`
(model, rubric, the judge's own cost) and re-scores the run.
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
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from evalkit.config import ConfigError, ExperimentConfig
from evalkit.data.testset import Item, load_testset
from evalkit.providers import build_provider
from evalkit.providers.base import Provider, ProviderSetup
from evalkit.run.cache import ResponseCache
from evalkit.run.journal import Journal, latest
from evalkit.run.runner import Job, RunStats, run_jobs
from evalkit.strategies.request import Request
from evalkit.tasks.judged import JUDGE_GROUNDED_METRIC, JUDGE_METRIC, JUDGE_REQUEST

VERDICT_SCORES = {"correct": 1.0, "partially_correct": 0.5, "incorrect": 0.0}
JUDGE_JOURNAL = "judge_journal.jsonl"  # in the run folder, beside predictions.jsonl

DEFAULT_RUBRIC = """You grade a candidate answer to a question against the reference answer(s).
Verdicts:
- correct: says the same as a reference answer (wording may differ; harmless extra detail is fine).
- partially_correct: contains part of a reference answer but misses or blurs something that matters.
- incorrect: wrong, contradicts the references, answers something else, or says "unknown"
  when a reference answer exists.
Reply with exactly one JSON object and nothing else:
{"verdict": "correct" | "partially_correct" | "incorrect", "reason": "<one short sentence>"}"""


# Groundedness as the judge sees it, for answers written from retrieved passages (the offline
# `groundedness` metric's counterpart, where a judge is configured with `groundedness: true`).
GROUNDED_RUBRIC = """You check whether a candidate answer is supported by the retrieved passages
it was written from (not whether it is right: only whether the passages say it).
Verdicts:
- supported: every claim in the answer is stated in, or follows from, the passages.
- partially_supported: some claims are in the passages, others are not.
- unsupported: the answer's claims are not in the passages, or contradict them.
Reply with exactly one JSON object and nothing else:
{"verdict": "supported" | "partially_supported" | "unsupported",
 "reason": "<one short sentence>"}"""
GROUNDED_SCORES = {"supported": 1.0, "partially_supported": 0.5, "unsupported": 0.0}
GROUNDED_JOURNAL = "judge_grounded_journal.jsonl"


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
    passages: tuple[str, ...] = ()  # what the answer was written from (groundedness)


def judge_request(case: JudgeCase, *, rubric: str = DEFAULT_RUBRIC,
                  model: str | None = None) -> Request:
    # one reference per line: a long-form reference's own line breaks are folded to spaces,
    # so the list stays a list
    refs = "\n".join(f"- {' '.join(r.split())}" for r in case.references) or "- (none given)"
    text = (f"Question: {case.question}\n\nReference answer(s):\n{refs}\n\n"
            f"Candidate answer: {case.answer}")
    return Request(task_type=JUDGE_REQUEST, instructions=rubric, input=text, model=model)


def grounded_request(case: JudgeCase, *, rubric: str = GROUNDED_RUBRIC,
                     model: str | None = None) -> Request:
    """Ask the judge whether the answer is supported by the passages shown to the rung."""
    shown = "\n".join(f"- {' '.join(p.split())}" for p in case.passages)
    text = (f"Question: {case.question}\n\nRetrieved passages:\n{shown}\n\n"
            f"Candidate answer: {case.answer}")
    return Request(task_type=JUDGE_REQUEST, instructions=rubric, input=text, model=model)


_LABELLED = re.compile(r"verdict\s*[:=]\s*\**\s*\"?([a-z_ ]+)", re.I)


def parse_verdict(text: str | None, scores: dict[str, float] = VERDICT_SCORES) -> Verdict:
    """The verdict in a judge's reply: a JSON object, else a `verdict: X` line, else NaN."""
    if not text:
        return Verdict(None, math.nan, "")
    for data in _json_objects(text):
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


def _json_objects(text: str):
    """Every JSON object in `text`, outermost first, wherever it starts (prose or a code
    fence around it): decoded from each "{" with the JSON decoder itself, so braces inside
    the reason ("the set {a, b}") or a nested object do not cut it short, as a regex for
    "{...}" did (the verdict was then lost and the item scored NaN)."""
    decoder = json.JSONDecoder()
    start = text.find("{")
    while start != -1:
        try:
            data, end = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            start = text.find("{", start + 1)
            continue
        yield data
        start = text.find("{", end)


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
              make_request=judge_request, scores: dict[str, float] = VERDICT_SCORES,
              spent_before_usd: float = 0.0) -> tuple[list[Judged], RunStats, list[Any]]:
    """Judge every case not yet in the journal; return all cases' verdicts and the stats.
    `make_request` and `scores`: what is asked (grading, or groundedness) and the verdicts.
    The cap covers what the journal's earlier sessions paid, plus `spent_before_usd` (the
    judge's other calls on this run), as `evalkit run`'s cap covers its --resume sessions."""
    journal = Journal(journal_path)
    earlier = journal.read()
    paid = [p.cost_usd for p in earlier if not p.cached]
    done = {(p.variant, p.item_id) for p in latest(earlier) if p.error_class is None}
    by_key = {(c.variant, c.id): c for c in cases}
    jobs = [Job(c.variant, Item(c.id, c.question, list(c.references)),
                lambda _it, c=c: make_request(c, rubric=rubric, model=model))
            for c in cases if (c.variant, c.id) not in done]
    stats = asyncio.run(run_jobs(jobs, total=len(jobs), provider=provider, cache=cache,
                                 journal=journal, concurrency=concurrency,
                                 max_cost_usd=max_cost_usd, progress=progress,
                                 spent_before_usd=spent_before_usd + sum(paid),
                                 dearest_call_usd=max(paid, default=0.0)))
    preds = [p for p in latest(Journal(journal_path).read()) if (p.variant, p.item_id) in by_key]
    out = []
    for p in preds:
        case = by_key[(p.variant, p.item_id)]
        if p.error_class is not None:
            out.append(Judged(case, Verdict(None, math.nan, ""), f"{p.error_class}: {p.error}"))
        else:
            out.append(Judged(case, parse_verdict(p.output, scores)))
    return out, stats, preds


# --- grading a run ----------------------------------------------------------------------------

def cases_from_run(run_dir: Path, variants: Sequence[str] | None = None, *,
                   with_passages: bool = False) -> list[JudgeCase]:
    """A case per successful prediction of the run (its latest attempt), with its references
    (and, `with_passages`, the text of each passage the rung was shown)."""
    from evalkit.scoring.score import passage_texts  # here: scoring loads pandas (issue 16.3)

    run = json.loads((Path(run_dir) / "run.json").read_text())
    testset = load_testset(run["config"]["testset"])
    items = {it.id: it for it in testset.test}
    texts = passage_texts(testset.task, testset.docs) if with_passages else {}
    cases = []
    for p in latest(Journal(Path(run_dir) / "predictions.jsonl").read()):
        if p.error_class is not None or p.output is None or p.item_id not in items:
            continue
        if variants and p.variant not in variants:
            continue
        item = items[p.item_id]
        shown = tuple(texts[(d, c)] for d, c in p.passages if (d, c) in texts)
        cases.append(JudgeCase(p.item_id, item.input, tuple(item.references), p.output,
                               variant=p.variant, passages=shown))
    return cases


def score_run(run_dir: Path | str, provider: Provider, *, model: str | None = None,
              rubric: str = DEFAULT_RUBRIC, cache: ResponseCache | None = None,
              variants: Sequence[str] | None = None, concurrency: int = 8,
              max_cost_usd: float | None = None, progress: bool = False,
              spent_before_usd: float = 0.0) -> dict[str, Any]:
    """Grade RUN_DIR's answers; write judge_scores.csv and judge.json; return the latter.
    `max_cost_usd` caps the judge journal's spend over every session, plus
    `spent_before_usd` (the judge's other calls on the run)."""
    run_dir = Path(run_dir)
    cases = cases_from_run(run_dir, variants)
    judged, stats, preds = run_judge(cases, provider, journal_path=run_dir / JUDGE_JOURNAL,
                                     rubric=rubric, model=model, cache=cache,
                                     concurrency=concurrency, max_cost_usd=max_cost_usd,
                                     progress=progress, spent_before_usd=spent_before_usd)
    import pandas as pd  # here, not at the top: `evalkit run` reads the judge settings
    # before its first call and must not wait for pandas to load (issue 16.3)

    rows = [{"run": run_dir.name, "variant": j.case.variant, "item_id": j.case.id,
             "metric": JUDGE_METRIC, "value": j.verdict.score, "verdict": j.verdict.verdict,
             "reason": j.verdict.reason, "error": j.error} for j in judged]
    table = pd.DataFrame(rows, columns=["run", "variant", "item_id", "metric", "value",
                                        "verdict", "reason", "error"])
    table.to_csv(run_dir / "judge_scores.csv", index=False)
    per_variant = {}
    wanted = Counter(c.variant for c in cases)  # answers to judge per variant, judged or not
    for variant, n_cases in wanted.items():
        group = table[table["variant"] == variant]
        values = group["value"].astype(float)
        per_variant[variant] = {"mean": float(values.mean()) if values.notna().any() else None,
                                "n": int(values.notna().sum()), "n_nan": int(values.isna().sum()),
                                "unparseable": int((group["error"].isna()
                                                    & values.isna()).sum()),
                                "errors": int(group["error"].notna().sum()),
                                # never asked: the judge's budget stop, an interrupt
                                "not_judged": n_cases - len(group)}
    summary = {"model": model or (provider.model or None), "rubric": rubric,
               "variants": per_variant, "judge_cost": _cost(preds, stats),
               "stopped": ({"reason": stats.stop, "message": stats.stop_message}
                           if stats.stop else None)}
    (run_dir / "judge.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


# --- the judge as a scorer: its settings, grading a run, its scores for scores.csv ------------

@dataclass(frozen=True)
class JudgeSettings:
    """The experiment config's `judge:` section. The judge grades a run when `score` is true,
    or when task.yaml names the `judge` metric; `labels` (human-labelled answers, JSONL as for
    `evalkit judge check`) adds the judge's agreement with people beside its scores."""

    provider: str = "openai"
    model: str | None = None
    base_url: str | None = None
    rubric: str = DEFAULT_RUBRIC
    score: bool = False
    max_cost_usd: float | None = None
    concurrency: int = 8
    labels: str | None = None
    groundedness: bool = False  # also ask whether retrieval rungs' answers are supported


_SETTING_TYPES = {"provider": str, "model": str, "base_url": str, "rubric": str, "score": bool,
                  "max_cost_usd": (int, float), "concurrency": int, "labels": str,
                  "groundedness": bool}


def judge_settings(config: ExperimentConfig) -> JudgeSettings | None:
    """The `judge:` section, checked (unknown keys and wrong types name the field); None when
    the config has no such section."""
    if "judge" not in config.sections:
        return None
    section = config.section("judge")
    for key, value in section.items():
        if key not in _SETTING_TYPES:
            raise ConfigError(config.path, f"unknown key; known: {', '.join(_SETTING_TYPES)}",
                              field=f"judge.{key}")
        kind = _SETTING_TYPES[key]
        if value is not None and (not isinstance(value, kind) or
                                  (kind is int and isinstance(value, bool))):
            raise ConfigError(config.path, f"must be {getattr(kind, '__name__', 'a number')}, "
                              f"got {value!r}", field=f"judge.{key}")
    return JudgeSettings(**section)


def judge_provider(settings: JudgeSettings, config: ExperimentConfig) -> Provider:
    """The provider the judge calls, built like a run's (`from_config`), with the judge's own
    model and server."""
    options = {"base_url": settings.base_url, "model": settings.model}
    return build_provider(settings.provider, ProviderSetup(
        options={k: v for k, v in options.items() if v is not None},
        config=config))


def grade_run(run_dir: Path | str, provider: Provider, settings: JudgeSettings, *,
              cache: ResponseCache | None = None, progress: bool = False) -> dict[str, Any]:
    """Grade every answer of the run (resuming the judge journal), and, with `labels`, check
    the judge against them; write judge_scores.csv and judge.json, return the latter."""
    run_dir = Path(run_dir)
    # `max_cost_usd` is the judge's one budget on the run: grading, groundedness and the
    # check against labels share it, each counting what the others have paid
    summary = score_run(run_dir, provider, model=settings.model, rubric=settings.rubric,
                        cache=cache, concurrency=settings.concurrency,
                        max_cost_usd=settings.max_cost_usd, progress=progress,
                        spent_before_usd=_paid(run_dir / GROUNDED_JOURNAL))
    if settings.groundedness:
        summary["groundedness_cost"] = _grade_grounded(run_dir, provider, settings, cache=cache,
                                                       progress=progress)
    if settings.labels:
        result = check(load_labels(settings.labels), provider, model=settings.model,
                       rubric=settings.rubric, cache=cache, concurrency=settings.concurrency,
                       max_cost_usd=settings.max_cost_usd,
                       spent_before_usd=_paid(run_dir / JUDGE_JOURNAL)
                       + _paid(run_dir / GROUNDED_JOURNAL))
        summary["human_agreement"] = {"labels": settings.labels, "n": result.n,
                                      "n_scored": result.n_scored,
                                      "accuracy": _finite(result.accuracy),
                                      "kappa": _finite(result.kappa),
                                      "judge_cost": result.judge_cost}
    (run_dir / "judge.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _grade_grounded(run_dir: Path, provider: Provider, settings: JudgeSettings, *,
                    cache: ResponseCache | None, progress: bool) -> dict[str, Any]:
    """The judge's groundedness verdict on every answer written from passages; its cost."""
    cases = [c for c in cases_from_run(run_dir, with_passages=True) if c.passages]
    _judged, stats, preds = run_judge(
        cases, provider, journal_path=run_dir / GROUNDED_JOURNAL, rubric=GROUNDED_RUBRIC,
        model=settings.model, cache=cache, concurrency=settings.concurrency,
        max_cost_usd=settings.max_cost_usd, progress=progress,
        make_request=grounded_request, scores=GROUNDED_SCORES,
        spent_before_usd=_paid(run_dir / JUDGE_JOURNAL))
    return _cost(preds, stats)


def _paid(journal_path: Path) -> float:
    """What the judge journal's calls were paid (cache hits cost nothing); 0 if none yet."""
    return sum(p.cost_usd for p in Journal(journal_path).read() if not p.cached)


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def judge_scores(run_dir: Path | str) -> dict[tuple[str, str], dict[str, float]]:
    """(variant, item id) -> {"judge": score} from the run's judge journal, for scores.csv:
    the latest judgement of each answer, NaN where the reply did not parse or the call
    failed; {} when the run was never judged."""
    out: dict[tuple[str, str], dict[str, float]] = {}
    for name, metric, scores in ((JUDGE_JOURNAL, JUDGE_METRIC, VERDICT_SCORES),
                                 (GROUNDED_JOURNAL, JUDGE_GROUNDED_METRIC, GROUNDED_SCORES)):
        for p in latest(Journal(Path(run_dir) / name).read()):
            score = (math.nan if p.error_class is not None
                     else parse_verdict(p.output, scores).score)
            out.setdefault((p.variant, p.item_id), {})[metric] = score
    return out


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
          max_cost_usd: float | None = None, spent_before_usd: float = 0.0) -> CheckResult:
    """Agreement of the judge with the human labels: accuracy and Cohen's kappa.
    `spent_before_usd`: what the judge already paid under the same `max_cost_usd`."""
    from sklearn.metrics import accuracy_score, cohen_kappa_score

    cases = list(cases)
    if sample is not None and sample < len(cases):
        cases = random.Random(seed).sample(cases, sample)
    with tempfile.TemporaryDirectory() as tmp:
        judged, stats, preds = run_judge(cases, provider, journal_path=Path(tmp) / "j.jsonl",
                                         rubric=rubric, model=model, cache=cache,
                                         concurrency=concurrency, max_cost_usd=max_cost_usd,
                                         spent_before_usd=spent_before_usd)
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
