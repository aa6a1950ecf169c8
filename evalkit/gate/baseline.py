"""Baselines: what the gate compares a run with, written only on purpose.

A baseline file holds one entry per test set (`testsets.<name>`), each a snapshot of one run:
per variant the summary's metric means (and `se`/`ci_low`/`ci_high` when the summary has them),
per-query cost, p50/p95 latency and call/error counts, plus the per-item quality scores from
`scores.csv` so the gate can run a paired test on the items both runs answered. One file can
hold every bundled test set; `evalkit baseline update RUN... --to FILE` replaces only the entries
of the test sets it is given, so updating one set never silently rewrites another.

The same `Snapshot` type is read from a run folder and from a baseline entry, so the gate compares
like with like. Every problem is a `GateError` naming the file and the field (exit 2 in the CLI).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from evalkit.run.runfolder import RunFolderError, read_items
from evalkit.scoring.score import COST_METRICS

SCHEMA_VERSION = 1
KIND = "evalkit-baseline"
OPTIONAL_METRIC_FIELDS = ("se", "ci_low", "ci_high")  # issue-5 names, kept when present


class GateError(ValueError):
    """A missing or malformed run folder or baseline, located by file and field."""

    def __init__(self, path: Path | str, message: str, *, field: str | None = None):
        self.path, self.field = str(path), field
        super().__init__(f"{self.path}:{f' field {field!r}:' if field else ''} {message}")


@dataclass(frozen=True)
class MetricStats:
    mean: float  # NaN when nothing was scorable
    n: int
    n_nan: int
    extra: dict[str, float] = field(default_factory=dict)  # se, ci_low, ci_high when present


@dataclass(frozen=True)
class VariantStats:
    metrics: dict[str, MetricStats]
    per_query_usd: float
    p50_s: float
    p95_s: float
    items: int
    errors: int
    cached: int
    scores: dict[str, dict[str, float]] = field(default_factory=dict)  # metric -> item -> value

    @property
    def error_rate(self) -> float:
        return self.errors / self.items if self.items else math.nan


@dataclass(frozen=True)
class Snapshot:
    """One test set's results, from a run folder or a baseline entry."""

    testset: str
    variants: dict[str, VariantStats]
    source: str  # the file it was read from, for messages
    run_id: str | None = None
    testset_hash: str | None = None
    # what testset_hash covers: "inputs" (evalkit.data.testset.HASH_OF), or None for a hash
    # of every file under the folder, as evalkit recorded before
    testset_hash_of: str | None = None
    summary_schema_version: int | None = None
    has_item_scores: bool = False
    clusters: dict[str, str | None] = field(default_factory=dict)  # item -> cluster (run only)
    # item -> hash of what it asks and expects, so the gate can count changed items
    item_hashes: dict[str, str] = field(default_factory=dict)
    # run.json "subset" (--limit/--sample): the run holds only some test items; None: all
    subset: dict[str, Any] | None = None

    def item_ids(self) -> set[str]:
        """Every item this snapshot knows of: from its item hashes, else from its scores."""
        if self.item_hashes:
            return set(self.item_hashes)
        return {i for v in self.variants.values() for m in v.scores.values() for i in m}


def item_hash(item: dict[str, Any]) -> str:
    """A short hash of an item's content (input, expected, gold passages, cluster)."""
    content = {k: item.get(k) for k in ("input", "expected", "doc_ids", "cluster")}
    blob = json.dumps(content, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


# ---- reading a run folder -------------------------------------------------------------------

def snapshot_from_run(run_dir: Path | str) -> Snapshot:
    """Read a run folder's summary.json, and scores.csv / run.json when present."""
    run_dir = Path(run_dir)
    path = run_dir / "summary.json"
    if not run_dir.is_dir():
        raise GateError(run_dir, "run folder not found")
    if not path.is_file():
        raise GateError(path, "summary.json not found; is this a run folder? "
                              "(`evalkit summarize RUN` rebuilds it from the journal)")
    raw = _read_json(path)
    version = raw.get("schema_version") if isinstance(raw, dict) else None
    if not isinstance(version, int) or isinstance(version, bool):
        raise GateError(path, "missing or non-integer schema_version", field="schema_version")
    testset = _req(raw, "testset", str, path, "testset")
    variants_raw = _req(raw, "variants", dict, path, "variants")
    scores_path = run_dir / "scores.csv"
    per_item = _read_scores(scores_path) if scores_path.is_file() else {}
    variants = {name: _variant(v, path, f"variants.{name}", per_item.get(name, {}))
                for name, v in variants_raw.items()}
    run_json = run_dir / "run.json"
    testset_hash, hash_of, subset = None, None, None
    if run_json.is_file():
        meta = _read_json(run_json)
        if isinstance(meta, dict):
            testset_hash = (meta.get("testset") or {}).get("hash")
            hash_of = (meta.get("testset") or {}).get("hash_of")
            subset = meta.get("subset") if isinstance(meta.get("subset"), dict) else None
    items = _read_items(run_dir / "items.jsonl")
    return Snapshot(testset=testset, variants=variants, source=str(path),
                    run_id=raw.get("run_id"), testset_hash=testset_hash,
                    testset_hash_of=hash_of, summary_schema_version=version,
                    has_item_scores=bool(per_item),
                    clusters={str(it["id"]): None if it.get("cluster") is None
                              else str(it["cluster"]) for it in items},
                    item_hashes={str(it["id"]): item_hash(it) for it in items}, subset=subset)


def run_gate_section(run_dir: Path | str) -> tuple[str, dict[str, Any]] | None:
    """The `gate:` section the run was made with (recorded in run.json), if any."""
    path = Path(run_dir) / "run.json"
    if not path.is_file():
        return None
    meta = _read_json(path)
    section = ((meta.get("experiment_config") or {}) if isinstance(meta, dict) else {}).get("gate")
    return (f"{path} (experiment_config)", section) if section is not None else None


def _read_items(path: Path) -> list[dict[str, Any]]:
    """items.jsonl: clusters for paired tests, item hashes for test-set changes."""
    try:
        return read_items(path)
    except RunFolderError as exc:  # the gate's own error: exit 2, file and line named
        raise GateError(exc.where, exc.message, field=exc.field) from exc


def _read_scores(path: Path) -> dict[str, dict[str, dict[str, float]]]:
    """scores.csv -> variant -> metric -> item_id -> value, quality metrics only."""
    try:
        df = pd.read_csv(path, dtype={"item_id": str, "variant": str, "metric": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise GateError(path, f"unreadable CSV: {exc}") from exc
    missing = {"variant", "item_id", "metric", "value"} - set(df.columns)
    if missing:
        raise GateError(path, "missing column(s)", field=sorted(missing)[0])
    df = df[~df["metric"].isin(COST_METRICS)]
    out: dict[str, dict[str, dict[str, float]]] = {}
    for (variant, metric), g in df.groupby(["variant", "metric"], sort=False):
        values = pd.to_numeric(g["value"], errors="coerce").astype(float)
        out.setdefault(variant, {})[metric] = dict(zip(g["item_id"], values, strict=True))
    return out


# ---- baseline files -------------------------------------------------------------------------

def load_baseline(path: Path | str) -> dict[str, Snapshot]:
    """Read and validate a baseline file: test-set name -> Snapshot."""
    path = Path(path)
    if not path.is_file():
        raise GateError(path, "baseline file not found "
                              "(write one with `evalkit baseline update RUN --to FILE`)")
    raw = _read_json(path)
    if not isinstance(raw, dict):
        raise GateError(path, "a baseline must be a JSON object")
    if raw.get("schema_version") != SCHEMA_VERSION:
        raise GateError(path, f"schema_version {raw.get('schema_version')!r} is not the "
                              f"{SCHEMA_VERSION} this evalkit reads", field="schema_version")
    if raw.get("kind") != KIND:
        raise GateError(path, f"expected {KIND!r}", field="kind")
    testsets = _req(raw, "testsets", dict, path, "testsets")
    if not testsets:
        raise GateError(path, "no test sets in the baseline", field="testsets")
    out = {}
    for name, entry in testsets.items():
        where = f"testsets.{name}"
        if not isinstance(entry, dict):
            raise GateError(path, "must be an object", field=where)
        variants_raw = _req(entry, "variants", dict, path, f"{where}.variants")
        if not variants_raw:
            raise GateError(path, "no variants", field=f"{where}.variants")
        variants = {}
        for vname, v in variants_raw.items():
            vwhere = f"{where}.variants.{vname}"
            scores = _baseline_scores(v.get("scores") if isinstance(v, dict) else None,
                                      path, f"{vwhere}.scores")
            variants[vname] = _variant(v, path, vwhere, scores)
        source = entry.get("source") or {}
        out[name] = Snapshot(
            testset=name, variants=variants, source=str(path),
            run_id=source.get("run_id") if isinstance(source, dict) else None,
            testset_hash=source.get("testset_hash") if isinstance(source, dict) else None,
            testset_hash_of=source.get("testset_hash_of") if isinstance(source, dict) else None,
            summary_schema_version=entry.get("summary_schema_version"),
            has_item_scores=any(v.scores for v in variants.values()),
            item_hashes=_baseline_item_hashes(source, path, f"{where}.source.item_hashes"),
            subset=(source.get("subset") if isinstance(source, dict)
                    and isinstance(source.get("subset"), dict) else None))
    return out


def update_baseline(run_dirs: list[Path | str], to: Path | str) -> list[Snapshot]:
    """Write (or refresh) the entries for these runs' test sets in the baseline file `to`.

    Entries for other test sets already in the file are kept; a malformed existing file is an
    error, never overwritten. Returns the snapshots written.
    """
    to = Path(to)
    snaps = [snapshot_from_run(r) for r in run_dirs]
    names = [s.testset for s in snaps]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise GateError(to, f"two runs of test set {sorted(dup)[0]!r}; give one run per test set")
    existing: dict[str, Any] = {}
    if to.exists():
        load_baseline(to)  # validate before touching it
        existing = json.loads(to.read_text(encoding="utf-8"))["testsets"]
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    for s, run_dir in zip(snaps, run_dirs, strict=True):
        existing[s.testset] = _entry_json(s, Path(run_dir), now)
    doc = {"schema_version": SCHEMA_VERSION, "kind": KIND,
           "testsets": {k: existing[k] for k in sorted(existing)}}
    to.parent.mkdir(parents=True, exist_ok=True)
    tmp = to.with_name(f".{to.name}.tmp")
    tmp.write_text(json.dumps(doc, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    tmp.replace(to)
    return snaps


def _entry_json(s: Snapshot, run_dir: Path, now: str) -> dict[str, Any]:
    meta = _read_json(run_dir / "run.json") if (run_dir / "run.json").is_file() else {}
    return {
        "updated_at": now,
        "source": {"run_id": s.run_id, "git_commit": meta.get("git_commit"),
                   "testset_hash": s.testset_hash,
                   **({"testset_hash_of": s.testset_hash_of} if s.testset_hash_of else {}),
                   "item_hashes": dict(sorted(s.item_hashes.items())),
                   **({"subset": s.subset} if s.subset else {})},
        "summary_schema_version": s.summary_schema_version,
        "variants": {name: {
            "metrics": {m: {"mean": _num(st.mean), "n": st.n, "n_nan": st.n_nan,
                            **{k: _num(x) for k, x in st.extra.items()}}
                        for m, st in v.metrics.items()},
            "cost": {"per_query_usd": _num(v.per_query_usd)},
            "latency": {"p50_s": _num(v.p50_s), "p95_s": _num(v.p95_s)},
            "calls": {"items": v.items, "errors": v.errors, "cached": v.cached},
            "scores": {m: {i: _num(x) for i, x in sorted(items.items())}
                       for m, items in v.scores.items()},
        } for name, v in s.variants.items()},
    }


# ---- shared parsing -------------------------------------------------------------------------

def _baseline_item_hashes(source: Any, path: Path, where: str) -> dict[str, str]:
    """A baseline's item hashes; {} for baselines recorded before they were kept."""
    raw = source.get("item_hashes") if isinstance(source, dict) else None
    if raw is None:
        return {}
    if not isinstance(raw, dict) or not all(isinstance(v, str) for v in raw.values()):
        raise GateError(path, "must map item ids to hash strings", field=where)
    return {str(k): v for k, v in raw.items()}


def _variant(raw: Any, path: Path, where: str,
             scores: dict[str, dict[str, float]]) -> VariantStats:
    if not isinstance(raw, dict):
        raise GateError(path, "must be an object", field=where)
    metrics_raw = _req(raw, "metrics", dict, path, f"{where}.metrics")
    metrics = {}
    for m, st in metrics_raw.items():
        mw = f"{where}.metrics.{m}"
        if not isinstance(st, dict):
            raise GateError(path, "must be an object", field=mw)
        metrics[m] = MetricStats(
            mean=_float(st, "mean", path, mw), n=_int(st, "n", path, mw),
            n_nan=_int(st, "n_nan", path, mw),
            extra={k: _float(st, k, path, mw) for k in OPTIONAL_METRIC_FIELDS if k in st})
    cost = _req(raw, "cost", dict, path, f"{where}.cost")
    latency = _req(raw, "latency", dict, path, f"{where}.latency")
    calls = _req(raw, "calls", dict, path, f"{where}.calls")
    return VariantStats(
        metrics=metrics,
        per_query_usd=_float(cost, "per_query_usd", path, f"{where}.cost"),
        p50_s=_float(latency, "p50_s", path, f"{where}.latency"),
        p95_s=_float(latency, "p95_s", path, f"{where}.latency"),
        items=_int(calls, "items", path, f"{where}.calls"),
        errors=_int(calls, "errors", path, f"{where}.calls"),
        cached=int(calls.get("cached", 0) or 0),
        scores={m: s for m, s in scores.items() if m in metrics},
    )


def _baseline_scores(raw: Any, path: Path, where: str) -> dict[str, dict[str, float]]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise GateError(path, "must be an object of metric -> {item_id: value}", field=where)
    out = {}
    for m, items in raw.items():
        if not isinstance(items, dict):
            raise GateError(path, "must be an object of item_id -> value", field=f"{where}.{m}")
        out[m] = {str(i): _float(items, i, path, f"{where}.{m}") for i in items}
    return out


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise GateError(f"{path}:{exc.lineno}:{exc.colno}", f"invalid JSON: {exc.msg}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise GateError(path, f"unreadable: {exc}") from exc


def _req(raw: dict, key: str, kind: type, path: Path, where: str) -> Any:
    value = raw.get(key)
    if not isinstance(value, kind):
        what = "missing" if value is None else f"a {type(value).__name__}"
        raise GateError(path, f"{what}, expected a {kind.__name__}", field=where)
    return value


def _float(raw: dict, key: str, path: Path, where: str) -> float:
    value = raw.get(key)
    if key not in raw:
        raise GateError(path, "missing", field=f"{where}.{key}")
    if value is None:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise GateError(path, f"{value!r} is not a number", field=f"{where}.{key}")
    return float(value)


def _int(raw: dict, key: str, path: Path, where: str) -> int:
    value = raw.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise GateError(path, f"{'missing' if value is None else repr(value)}, expected an "
                              f"integer", field=f"{where}.{key}")
    return value


def _num(x: float) -> float | None:
    """NaN/inf -> null, so baseline files are strict JSON."""
    return None if x is None or not math.isfinite(x) else x
