"""The runner: every (variant, item) job through the provider, concurrently, exactly once.

A fixed pool of `concurrency` workers pulls jobs from one iterator, so memory stays flat for
any number of items. For each job: build the Request, look it up in the cache, else call the
provider; journal the result the moment it is known. A call that raises is journaled as an
error for that item and the run goes on. With `max_cost_usd`, every call first reserves its
worst case (the provider's `estimate_cost`) with the run's `Budget` (evalkit/run/budget.py
has the rules); jobs left after a budget stop are not journaled, so `--resume` can finish
them.

A run stops early, leaving the rest for `--resume`, on: the budget stop; Ctrl-C (SIGINT:
no new call, the calls in flight finish and are journaled; a second Ctrl-C abandons them);
a provider that raises `ServerUnreachable` (the server cannot be reached at all).
"""

from __future__ import annotations

import asyncio
import itertools
import signal
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace

from tqdm import tqdm

from evalkit.data.testset import Item
from evalkit.providers.base import Completion, Provider, ServerUnreachable
from evalkit.run.budget import Budget
from evalkit.run.cache import KeyMaker, ResponseCache
from evalkit.run.journal import Journal, Prediction, shown
from evalkit.run.ledger import CallLedger
from evalkit.strategies.request import Request

STOP_BUDGET, STOP_INTERRUPTED, STOP_UNREACHABLE = "budget", "interrupted", "unreachable"


@dataclass
class Job:
    """One (variant, item[, epoch]); `provider`: the variant's own (None: the run's)."""

    variant: str
    item: Item
    build: Callable[[Item], Request]
    provider: Provider | None = None
    epoch: int = 0  # the repetition (`--epochs`); each has its own cache entry


@dataclass
class RunStats:
    jobs: int = 0
    calls: int = 0          # provider calls made (including failed ones)
    cache_hits: int = 0
    errors: int = 0         # error lines this session wrote
    skipped_budget: int = 0
    not_started: int = 0    # jobs left untouched by an interrupt or an unreachable server
    spent_usd: float = 0.0  # what this session actually paid (cache hits are free)
    notional_usd: float = 0.0  # what every answer would have cost uncached
    wall_s: float = 0.0
    http_attempts: int | None = None  # HTTP requests sent, retries included (if metered)
    cap_usd: float | None = None
    run_spent_usd: float = 0.0      # the whole run's spend at the end of this session
    skipped_worst_usd: float = 0.0  # worst case of the calls the budget stop skipped
    stop: str | None = None         # why the session ended early (STOP_*), if it did
    stop_message: str | None = None
    output_limit_ignored: str | None = None  # the provider saw a server ignore its limit
    cut_at_limit: int = 0  # answers the server cut at the output limit (scored as cut)
    usage_estimated: int = 0  # answers with no token count from the server (billed at bounds)


async def run_jobs(jobs: Iterable[Job], *, total: int, provider: Provider,
                   cache: ResponseCache | None, journal: Journal, concurrency: int = 8,
                   max_cost_usd: float | None = None, spent_before_usd: float = 0.0,
                   dearest_call_usd: float = 0.0, ledger: CallLedger | None = None,
                   progress: bool = True, label: str = "") -> RunStats:
    """Run `jobs`. `spent_before_usd` is what earlier sessions of the run spent, and
    `dearest_call_usd` their dearest call: the cap is the run's, not the session's. The
    progress bar reads `label` (the test set) and the current variant."""
    budget = Budget(max_cost_usd, spent_before_usd=spent_before_usd,
                    dearest_call_usd=dearest_call_usd)
    run = _Run(provider, cache, journal, ledger, budget, label)
    # disable=None: tqdm draws only on a terminal, so CI logs are not flooded
    run.bar = tqdm(total=total, disable=None if progress else True, unit="item", leave=False)
    it = run.prepared(iter(jobs))
    start = time.perf_counter()
    tasks = [asyncio.create_task(run.worker(it)) for _ in range(max(1, concurrency))]
    restore = _on_sigint(run, tasks)
    try:
        results = await asyncio.gather(*tasks, return_exceptions=True)
        for r in results:
            if isinstance(r, BaseException) and not isinstance(r, asyncio.CancelledError):
                raise r
        if run.flush_error is not None:  # the last turn's flush, after the workers ended
            raise run.flush_error
    finally:
        restore()
        run.bar.close()
        journal.close()  # if this raises, the ledger's closes for its lines stay unwritten
        if ledger is not None:
            ledger.close()
        for llm in run.providers():
            await llm.aclose()  # HTTP clients close inside their loop
    return run.finish(time.perf_counter() - start)


PREPARE_BATCH = 64  # jobs built and looked up together: one cache query, ~2 ms of loop time


@dataclass(frozen=True)
class _Prepared:
    """A job with its request, cache key and prompt id (its messages, recorded in
    messages.jsonl), or the exception building them raised."""

    job: Job
    request: Request | None
    key: str
    error: Exception | None
    prompt: str = ""


class _Run:
    """One session's shared state: the workers, the budget, the stop."""

    def __init__(self, provider: Provider, cache: ResponseCache | None, journal: Journal,
                 ledger: CallLedger | None, budget: Budget, label: str = ""):
        self.provider, self.cache, self.journal, self.ledger = provider, cache, journal, ledger
        self.used: dict[int, Provider] = {id(provider): provider}  # every provider a job used
        self.budget = budget
        self.stats = RunStats(cap_usd=budget.cap_usd)
        self.inflight: dict[str, asyncio.Future] = {}  # cache key -> the answer being fetched
        self.keys = KeyMaker()  # request_key, each provider's fixed part serialised once
        self.bar = None
        self.label, self.shown = label, ""  # the variant the bar names
        self.flush_due = False  # a `flush` is scheduled for the end of this loop turn
        self.flush_error: Exception | None = None  # what a scheduled flush raised
        self.loop = asyncio.get_running_loop()  # built inside run_jobs: the run's loop

    def halt(self, reason: str, message: str) -> None:
        """End the session early; an interrupt outranks a budget stop already recorded."""
        if self.stats.stop is None or reason == STOP_INTERRUPTED:
            self.stats.stop, self.stats.stop_message = reason, message
        self.budget.stop()

    def prepared(self, jobs) -> Iterator[_Prepared]:
        """`jobs` with their request and cache key, built `PREPARE_BATCH` at a time so the
        cache looks the batch up in one query (`ResponseCache.prefetch`) instead of one per
        job, and their messages recorded (messages.jsonl) so that the batch's records go out
        in one write, with the first journal line after them, instead of one per line; a
        job left unjournaled by a stop leaves an unreferenced record, as a kill may. A build
        or render error travels with its job, to be journaled in its turn."""
        while True:
            batch = []
            for job in itertools.islice(jobs, PREPARE_BATCH):
                if self.stats.stop in (STOP_INTERRUPTED, STOP_UNREACHABLE):
                    batch.append(_Prepared(job, None, "", None))  # not started: not built
                    continue
                try:
                    request = job.build(job.item)
                    key = self.keys.key(self.llm(job), request, epoch=job.epoch)
                except Exception as exc:  # a variant that cannot build or render this item
                    batch.append(_Prepared(job, None, "", exc))
                    continue
                prompt = self.journal.sent.record(request.rendered())
                batch.append(_Prepared(job, request, key, None, prompt))
            if not batch:
                return
            if self.cache:
                self.cache.prefetch([p.key for p in batch if p.request is not None])
            yield from batch

    async def worker(self, it) -> None:
        for prep in it:  # a shared iterator: each job goes to exactly one worker
            if self.flush_error is not None:
                raise self.flush_error
            job = prep.job
            if self.stats.stop in (STOP_INTERRUPTED, STOP_UNREACHABLE):
                self.stats.not_started += 1
                continue
            self.stats.jobs += 1
            if job.variant != self.shown:  # jobs come variant by variant: name the one started
                self.shown = job.variant
                self.bar.set_description(f"{self.label} {job.variant}".strip(), refresh=False)
            await self.one(prep)
            self.bar.update()

    async def one(self, prep: _Prepared) -> None:
        taken = time.perf_counter()  # the job is taken: client-side wait starts (queue_s)
        job, request, key = prep.job, prep.request, prep.key
        if request is None:
            self.error(job, prep.error)  # no request: nothing was sent
            return
        completion = self.cache.get(key) if self.cache else None
        if completion is None and key in self.inflight:
            completion = await self.shared(key)
        if completion is None:
            await self.call(prep, taken)
            return
        self.stats.cache_hits += 1
        self.stats.notional_usd += completion.cost_usd
        self.journaled(prediction(job, request, completion), prep.prompt)

    async def shared(self, key: str) -> Completion | None:
        """The same request already on its way (e.g. two variants rendering alike): share
        that answer instead of paying for it twice, as a cache hit would."""
        if key not in self.inflight:
            return None
        try:
            return replace(await asyncio.shield(self.inflight[key]), cached=True)
        except Exception:
            return None  # that call failed: make our own attempt

    async def call(self, prep: _Prepared, taken: float) -> None:
        """Reserve the call's worst case, make it, journal it, settle the budget."""
        job, request, key = prep.job, prep.request, prep.key
        def worst_case() -> float:  # a provider with no bound: the dearest call seen stands in
            worst = self.llm(job).estimate_cost(request)
            return self.budget.dearest_call_usd if worst is None else worst

        try:
            worst = worst_case()
            if not self.budget.take(worst):  # it must wait for room, or it is the stop
                worst = await self.budget.reserve(worst_case)
        except Exception as exc:  # e.g. no price known for the model: don't call
            self.error(job, exc)  # refused before sending: no messages
            return
        if worst is None:
            if self.flush_error is not None:  # the stop was a failed write: the run's error
                raise self.flush_error
            if self.stats.stop in (STOP_INTERRUPTED, STOP_UNREACHABLE):
                self.stats.not_started += 1
                return
            self.stats.skipped_budget += 1
            self.stats.skipped_worst_usd += worst_case()
            self.halt(STOP_BUDGET, "the next call could cross the cap")
            return
        # an identical call left, or was answered and cached, while this one waited for room
        # (only a cap makes a call wait: uncapped, the look-up in `one` was just made)
        recheck = self.cache is not None and self.budget.cap_usd is not None
        completion = self.cache.get(key) if recheck and key not in self.inflight else None
        if completion is not None or key in self.inflight:
            self.budget.settle(worst, 0.0, answered=False)
            completion = completion or await self.shared(key)
            if completion is None:
                return await self.call(prep, taken)
            self.stats.cache_hits += 1
            self.stats.notional_usd += completion.cost_usd
            self.journaled(prediction(job, request, completion), prep.prompt)
            return
        await self.paid_call(prep, worst, taken)

    async def paid_call(self, prep: _Prepared, worst: float, taken: float) -> None:
        job, request, key = prep.job, prep.request, prep.key
        try:
            n = self.open_call(key, worst) if self.ledger else 0
        except Exception as exc:  # the journal or the ledger cannot be written: not sent
            self.budget.settle(worst, 0.0, answered=False)
            self.failed(exc)
            raise
        self.stats.calls += 1
        shared = self.inflight[key] = self.loop.create_future()
        completion = None
        try:
            completion = await self.llm(job).complete(request)
            # sent = answered - latency (the HTTP library's send-to-last-byte clock), so the
            # wait for budget room, SDK, connection and retries is queue_s, not latency_s
            waited = max(0.0, time.perf_counter() - completion.latency_s - taken)
            shared.set_result(completion)
        except Exception as exc:
            shared.set_exception(exc)
            shared.exception()  # retrieved: no "never retrieved" warning without waiters
            self.error(job, exc, prep.prompt)  # sent (perhaps), and failed: show what was sent
            if self.ledger:
                self.ledger.close_call(n, 0.0, defer=True)
            if isinstance(exc, ServerUnreachable):
                self.halt(STOP_UNREACHABLE, str(exc))
            return
        finally:
            self.inflight.pop(key, None)
            if shared.done():
                cost = completion.cost_usd if completion is not None else 0.0
                self.budget.settle(worst, cost, answered=completion is not None)
            else:  # cancelled mid-call (a second Ctrl-C): release any waiters; the call
                shared.cancel()  # stays open in the ledger, so the next session counts it
        self.stats.spent_usd += completion.cost_usd
        self.stats.notional_usd += completion.cost_usd
        if self.cache:
            self.cache.put(key, completion)
        self.journaled(prediction(job, request, completion, queue_s=waited), prep.prompt)
        if self.ledger:  # after the journal line: a kill in between counts it twice, not never
            self.ledger.close_call(n, completion.cost_usd, defer=True)

    def error(self, job: Job, exc: Exception, prompt: str = "") -> None:
        self.stats.errors += 1
        self.journaled(Prediction(variant=job.variant, item_id=job.item.id, output=None,
                                  error_class=type(exc).__name__, error=str(exc)[:500],
                                  epoch=job.epoch), prompt)

    def journaled(self, pred: Prediction, prompt: str) -> None:
        """Journal `pred`, naming the messages its request sent (`prompt`, recorded when it
        was prepared; "": none), flushed at the end of this turn of the event loop with every
        other line of the turn (`flush`)."""
        pred.prompt = prompt
        self.journal.append(pred, defer=True)
        self.flush_soon()

    def open_call(self, key: str, worst: float) -> int:
        """Write the call down before it is sent, and after every answer so far: the
        journal's pending lines first, then the ledger's closes for them with this call's
        open line, in one write. A kill then loses only calls in flight (open in the ledger,
        so counted, and redone), never an answer that came back before it."""
        if self.flush_error is not None:
            raise self.flush_error
        self.journal.flush()  # the answers so far (their lines kept if this fails)
        n = self.ledger.open_call(key, worst, defer=True)
        self.ledger.flush()
        return n

    def flush_soon(self) -> None:
        if not self.flush_due:
            self.flush_due = True
            self.loop.call_soon(self.flush)

    def flush(self) -> None:
        """The turn's journal lines (after their messages), then the ledger's close lines
        for them, once per turn of the loop (each file in one write) for what `open_call`
        has not already written. A failure (a full disk) stops every worker with it."""
        self.flush_due = False
        try:
            self.journal.flush()
            if self.ledger:  # only after the journal lines they close are written
                self.ledger.flush()
        except Exception as exc:
            self.failed(exc)

    def failed(self, exc: Exception) -> None:
        """The journal or the ledger cannot be written (a full disk, a read-only folder):
        no further call; every worker raises `exc` at its next job or wait, and run_jobs
        with it. Lines not written stay unwritten, and so do the ledger closes of answers
        whose journal lines they are, so those calls count as open (spent), not closed."""
        if self.flush_error is None:
            self.flush_error = exc
        self.budget.stop()  # wakes the calls waiting for budget room

    def finish(self, wall_s: float) -> RunStats:
        s = self.stats
        s.wall_s = wall_s
        s.run_spent_usd = self.budget.spent_usd
        for llm in self.providers():
            counts = llm.transport_counts()
            if counts is not None:
                s.http_attempts = (s.http_attempts or 0) + counts["http_attempts"]
            s.output_limit_ignored = s.output_limit_ignored or llm.output_limit_ignored
            s.cut_at_limit += llm.cut_at_limit()
            s.usage_estimated += llm.usage_estimated()
        return s

    def llm(self, job: Job) -> Provider:
        """The provider that answers `job`: its variant's own, else the run's."""
        llm = job.provider or self.provider
        self.used.setdefault(id(llm), llm)
        return llm

    def providers(self) -> list[Provider]:
        return list(self.used.values())


def _on_sigint(run: _Run, tasks: list[asyncio.Task]) -> Callable[[], None]:
    """First Ctrl-C: issue no new call, let the calls in flight finish and be journaled.
    Second: abandon them (they stay open in the ledger and are counted as spent)."""
    loop = asyncio.get_running_loop()

    def handler() -> None:
        if run.stats.stop != STOP_INTERRUPTED:
            run.halt(STOP_INTERRUPTED, "interrupted (Ctrl-C)")
            print(f"\ninterrupted: finishing {run.budget.in_flight} call(s) in flight; "
                  f"Ctrl-C again to abandon them", file=sys.stderr, flush=True)
        else:
            for task in tasks:
                task.cancel()

    try:
        loop.add_signal_handler(signal.SIGINT, handler)
    except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or Windows
        return lambda: None
    return lambda: loop.remove_signal_handler(signal.SIGINT)


def prediction(job: Job, request: Request, c: Completion, *,
               queue_s: float | None = None) -> Prediction:
    """The journal line of one answered job (live, cached or from a batch)."""
    u = c.usage
    p = Prediction(
        variant=job.variant, item_id=job.item.id, output=c.text, model=c.model,
        input_tokens=u.input_tokens, output_tokens=u.output_tokens,
        cached_input_tokens=u.cached_input_tokens, latency_s=c.latency_s, queue_s=queue_s,
        cost_usd=c.cost_usd, cached=c.cached, epoch=job.epoch)
    if request.passages:  # most requests show none: the empty lists stand
        seen = shown(request.passages)
        p.retrieved, p.passages = seen["retrieved"], seen["passages"]
    return p
