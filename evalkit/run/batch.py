"""`evalkit run --batch`: every uncached request through the provider's Batch API.

For runs too large or too cheap-minded for live calls: each variant's requests go out as
OpenAI Batch API jobs (half price on OpenAI, answered within 24 h), the same JSONL that
vLLM's offline batch runner and other OpenAI-compatible batch endpoints take.

What makes it safe to kill: the run folder's `batches.json` records each batch *before* it
is created (its input file id) and again once created (its batch id). A session that is
killed or closed resumes by polling the recorded batches, never by resubmitting them; a
kill between upload and create is healed by finding the batch over that input file. Answers
are journaled (and cached) as each batch completes, so nothing fetched is fetched twice.
Requests a batch failed, or that an expired/cancelled batch never answered, are journaled as
errors for their items, which `--resume` submits again.

The budget cap is applied at submission: a request is submitted only if the spend so far,
plus the worst case of every batch still out, plus its own worst case
(`provider.estimate_cost`) fit the cap. Answers are priced at the batch rate
(`pricing.batch_price_factor`).
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evalkit.providers.base import Provider
from evalkit.providers.openai_batch import MAX_BYTES, MAX_REQUESTS
from evalkit.run.cache import ResponseCache, request_key
from evalkit.run.journal import Journal, Prediction, shown
from evalkit.run.runner import Job, RunStats, prediction
from evalkit.strategies.request import Request

STATE_FILE = "batches.json"


@dataclass(frozen=True)
class BatchSettings:
    """How batches are sized and polled (`--batch-poll-interval`, the API's limits)."""

    poll_interval_s: float = 30.0
    max_requests: int = MAX_REQUESTS
    max_bytes: int = MAX_BYTES


@dataclass
class _Pending:
    job: Job
    request: Request
    key: str
    custom_id: str
    model: str
    worst_case_usd: float
    prompt: str = ""  # the messages it sends, recorded in messages.jsonl (evalkit/run/sent.py)


def custom_id(job: Job) -> str:
    """A stable id for one (variant, item) within a run: the same on every resume."""
    return hashlib.sha256(f"{job.variant}\0{job.item.id}".encode()).hexdigest()[:24]


def run_batches(jobs: Iterable[Job], *, provider: Provider, cache: ResponseCache | None,
                journal: Journal, run_dir: Path, settings: BatchSettings = BatchSettings(),
                max_cost_usd: float | None = None, spent_before_usd: float = 0.0,
                say: Callable[[str], None] | None = None) -> RunStats:
    """Submit what is neither cached nor already out, then poll every open batch to the end."""
    say = say or (lambda line: print(line, file=sys.stderr, flush=True))
    stats, start = RunStats(), time.perf_counter()
    state = _State(Path(run_dir) / STATE_FILE)
    out = state.open_ids()
    fresh = []
    for job in jobs:
        stats.jobs += 1
        pending = _prepare(job, provider, journal, stats, cache, out)
        if pending is not None:
            fresh.append(pending)
    reserved = spent_before_usd + state.open_worst_case()
    accepted = []
    for p in fresh:
        if max_cost_usd is not None and reserved + p.worst_case_usd > max_cost_usd:
            stats.skipped_budget += 1
            continue
        reserved += p.worst_case_usd
        accepted.append(p)
    try:
        state.heal(provider)  # records left half-submitted by a killed session
        for base_url, chunk in _chunks(accepted, provider, settings):
            state.submit(provider, base_url, chunk, run_id=Path(run_dir).name)
            say(f"batch submitted: {len(chunk)} requests -> {state.records[-1]['id']}")
        _poll(state, provider, cache, journal, stats, settings, say)
    finally:
        journal.close()
    stats.wall_s = time.perf_counter() - start
    return stats


def _prepare(job: Job, provider: Provider, journal: Journal, stats: RunStats,
             cache: ResponseCache | None, out: set[str]) -> _Pending | None:
    """A job to submit, or None when it is answered from the cache, already out in a
    recorded batch, or cannot be built (journaled as an error)."""
    try:
        request = job.build(job.item)
        key = request_key(provider, request)
        cid = custom_id(job)
        if cid in out:
            return None
        hit = cache.get(key) if cache else None
        if hit is not None:
            stats.cache_hits += 1
            stats.notional_usd += hit.cost_usd
            journal.append(prediction(job, request, hit), messages=request.messages())
            return None
        worst = provider.estimate_cost(request)
        return _Pending(job, request, key, cid, provider.model_for(request), worst,
                        journal.record_messages(request.messages()))
    except Exception as exc:
        _error(journal, stats, job.variant, job.item.id, f"{type(exc).__name__}: {exc}",
               type(exc).__name__)
        return None


def _chunks(accepted: list[_Pending], provider: Provider, settings: BatchSettings):
    """Requests grouped by the server that answers their model, split to the API's limits."""
    by_url: dict[str | None, list[_Pending]] = {}
    for p in accepted:
        url = provider.server_for(p.model)
        by_url.setdefault(url, []).append(p)
    for url, items in by_url.items():
        chunk: list[_Pending] = []
        size = 0
        for p in items:
            line = len(json.dumps(provider.body(p.request), ensure_ascii=False)) + 200
            if chunk and (len(chunk) >= settings.max_requests or size + line > settings.max_bytes):
                yield url, chunk
                chunk, size = [], 0
            chunk.append(p)
            size += line
        if chunk:
            yield url, chunk


def _poll(state: _State, provider: Provider, cache: ResponseCache | None, journal: Journal,
          stats: RunStats, settings: BatchSettings, say: Callable[[str], None]) -> None:
    last = ""
    while True:
        open_records = [r for r in state.records if not r["journaled"]]
        if not open_records:
            return
        for record in open_records:
            api = provider.batches(record["base_url"])
            status = api.retrieve(record["id"])
            record["status"] = status.status
            if status.done:
                _collect(record, api, status, cache, journal, stats)
                record["journaled"] = True
                state.save()
        line = ", ".join(f"{r['id']} {r['status']}" for r in open_records)
        if line != last:
            say(f"batches: {line}")
            last = line
        if any(not r["journaled"] for r in state.records):
            time.sleep(settings.poll_interval_s)


def _collect(record: dict, api: Any, status: Any, cache: ResponseCache | None,
             journal: Journal, stats: RunStats) -> None:
    """Journal every answer of a finished batch; requests it did not answer are errors."""
    requests = record["requests"]
    seen: set[str] = set()
    for result in api.results(status):
        meta = requests.get(result.custom_id)
        if meta is None or result.custom_id in seen:
            continue  # not ours, or a duplicate line
        seen.add(result.custom_id)
        stats.calls += 1
        if result.error is not None:
            _error(journal, stats, meta["variant"], meta["item_id"], result.error, "BatchError",
                   prompt=meta.get("prompt", ""))
            continue
        try:
            completion = api.completion(result, model=meta["model"])
        except Exception as exc:
            _error(journal, stats, meta["variant"], meta["item_id"], str(exc), type(exc).__name__)
            continue
        stats.spent_usd += completion.cost_usd
        stats.notional_usd += completion.cost_usd
        if cache:
            cache.put(meta["key"], completion)
        journal.append(Prediction(
            variant=meta["variant"], item_id=meta["item_id"], output=completion.text,
            model=completion.model, input_tokens=completion.usage.input_tokens,
            output_tokens=completion.usage.output_tokens,
            cached_input_tokens=completion.usage.cached_input_tokens, latency_s=0.0,
            cost_usd=completion.cost_usd, cached=False, retrieved=meta["retrieved"],
            passages=meta.get("passages", []),  # batches.json from before passages were kept
            prompt=meta.get("prompt", "")))
    for cid, meta in requests.items():
        if cid not in seen:
            _error(journal, stats, meta["variant"], meta["item_id"],
                   f"batch {record['id']} ended {status.status} without answering this "
                   f"request; --resume submits it again", "BatchError")


def _error(journal: Journal, stats: RunStats, variant: str, item_id: str, message: str,
           error_class: str, *, prompt: str = "") -> None:
    stats.errors += 1
    journal.append(Prediction(variant=variant, item_id=item_id, output=None,
                              error_class=error_class, error=message[:500], prompt=prompt))


class _State:
    """`batches.json`: every batch this run has submitted, written before and after each
    step of a submission (atomic replace), so a kill at any point is resumable."""

    def __init__(self, path: Path):
        self.path = path
        self.records: list[dict[str, Any]] = []
        if path.is_file():
            recorded = json.loads(path.read_text(encoding="utf-8"))["batches"]
            # a record without an input file id was killed mid-upload: no batch can exist
            # for it (creating one needs the file id), so its requests are simply submitted
            # again
            self.records = [r for r in recorded if r["input_file_id"] or r["id"]]

    def save(self) -> None:
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        tmp.write_text(json.dumps({"batches": self.records}, indent=1) + "\n", encoding="utf-8")
        tmp.replace(self.path)

    def open_ids(self) -> set[str]:
        return {cid for r in self.records if not r["journaled"] for cid in r["requests"]}

    def open_worst_case(self) -> float:
        return sum(r["worst_case_usd"] for r in self.records if not r["journaled"])

    def submit(self, provider: Provider, base_url: str | None, chunk: list[_Pending], *,
               run_id: str) -> None:
        api = provider.batches(base_url)
        record = {"id": None, "input_file_id": None, "base_url": base_url,
                  "status": "uploading", "journaled": False,
                  "worst_case_usd": sum(p.worst_case_usd for p in chunk),
                  "submitted_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                  "requests": {p.custom_id: {
                      "variant": p.job.variant, "item_id": p.job.item.id, "key": p.key,
                      "model": p.model, "prompt": p.prompt,
                      **shown(p.request.passages)}
                      for p in chunk}}
        self.records.append(record)
        self.save()
        lines = [api.line(p.custom_id, p.request) for p in chunk]
        record["input_file_id"] = api.upload(lines)
        record["status"] = "uploaded"
        self.save()
        self._create(api, record, run_id)

    def heal(self, provider: Provider) -> None:
        """Finish the submissions a killed session left half done."""
        for record in self.records:
            if record["journaled"] or record["id"]:
                continue
            api = provider.batches(record["base_url"])
            found = api.find(record["input_file_id"])
            if found:
                record["id"], record["status"] = found, "submitted"
                self.save()
            else:
                self._create(api, record, run_id=self.path.parent.name)

    def _create(self, api: Any, record: dict, run_id: str) -> None:
        record["id"] = api.create(record["input_file_id"], metadata={"evalkit_run": run_id})
        record["status"] = "submitted"
        self.save()
