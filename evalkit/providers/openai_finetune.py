"""Fine-tuning through an OpenAI-compatible API, and registering models trained elsewhere.

`prepare`: the chat-format JSONL from the train split, one line per train item with exactly
the messages the prompt-only rung sends (`Request.messages()`) plus the reference answer as the
assistant turn, so the fine-tuned model sees at inference what it was trained on. It is
validated (at least 10 examples, roles, no empty turns), its tokens are estimated, and the
training cost is estimated from the price per trained token × epochs. Refused when any test
item leaks into the train split (evalkit.data.leakage).

`start` uploads the file (`files.create(purpose="fine-tune")`), creates the job
(`fine_tuning.jobs.create`) and writes `finetunes/<name>.json` at once, so a crash while
polling loses nothing: `poll` (also `evalkit finetune status NAME`) resumes from the record,
prints new job events, and on success records `fine_tuned_model`, `trained_tokens` and the
training cost (trained tokens × the base model's training price).

Re-running `train` never silently pays twice: while the record names a job still in progress
it refuses and points at `evalkit finetune status NAME`; when the record already holds a model
trained on the same train split from the same base model it does nothing; `force=True`
(`--force`) starts a new job regardless.

`register` records a model trained somewhere else (a LoRA served by vLLM, Ollama or llama.cpp)
with its GPU-hours × hourly price; the fine-tuned rungs then call it like any other, on its own
server when `base_url` is given.
"""

from __future__ import annotations

import io
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from evalkit.config import ExperimentConfig
from evalkit.data.testset import Testset
from evalkit.providers.openai import NO_KEY_PLACEHOLDER, OpenAIProvider, approx_tokens, redact_url
from evalkit.providers.pricing import PriceBook
from evalkit.strategies.finetune import (
    FineTuneRecord,
    default_name,
    load_record,
    record_path,
    refuse_leakage,
    save_record,
    train_hash,
)
from evalkit.strategies.variants import VariantContext, default_variant
from evalkit.tasks import task_type

MIN_EXAMPLES = 10  # OpenAI's minimum for a fine-tuning file
DEFAULT_EPOCHS = 3  # for the estimate when n_epochs is "auto" (OpenAI may pick more for tiny files)
TERMINAL = ("succeeded", "failed", "cancelled")
# recorded between the upload and the job's id: a job the server may have made, not yet known
CREATING = "creating"


class FineTuneError(RuntimeError):
    """A fine-tuning job could not be prepared, started or finished."""


@dataclass(frozen=True)
class TrainingFile:
    """The JSONL to upload, and what the validation found."""

    lines: list[dict[str, Any]]
    tokens_per_epoch: int
    epochs: int
    usd_per_mtok: float | None  # training price of the base model, if known
    estimated_cost_usd: float | None

    def jsonl(self) -> bytes:
        return "".join(json.dumps(line, ensure_ascii=False) + "\n"
                       for line in self.lines).encode()


def build_lines(testset: Testset) -> list[dict[str, Any]]:
    """One chat example per train item: the prompt-only rung's messages + the reference."""
    ctx = VariantContext(testset)
    rung = default_variant("prompt-only", testset)
    lines = []
    target = task_type(testset.task.type).target
    for item in testset.train:
        messages = rung.build(item, ctx).messages()
        lines.append({"messages": [*messages, {"role": "assistant",
                                               "content": target(item, testset.task)}]})
    return lines


def validate(lines: list[dict[str, Any]], where: str) -> None:
    """OpenAI's format rules that fail a job late if not checked early."""
    if len(lines) < MIN_EXAMPLES:
        raise FineTuneError(f"{where}: {len(lines)} training examples; fine-tuning needs at "
                            f"least {MIN_EXAMPLES}")
    for n, line in enumerate(lines, 1):
        msgs = line.get("messages")
        if not isinstance(msgs, list) or not msgs:
            raise FineTuneError(f"{where}: line {n}: field 'messages' must be a non-empty list")
        for m in msgs:
            if m.get("role") not in ("system", "user", "assistant"):
                raise FineTuneError(f"{where}: line {n}: field 'role' is {m.get('role')!r}")
            if not isinstance(m.get("content"), str) or not m["content"].strip():
                raise FineTuneError(f"{where}: line {n}: field 'content' is empty "
                                    f"({m.get('role')} turn)")
        if msgs[-1]["role"] != "assistant":
            raise FineTuneError(f"{where}: line {n}: the last turn must be the assistant's")


def prepare(testset: Testset, *, base_model: str, prices: PriceBook,
            n_epochs: int | None = None, allow_leakage: bool = False) -> TrainingFile:
    """Build, check and cost the training file. Raises before anything is uploaded."""
    where = str(Path(testset.path) / "train.jsonl")
    if not testset.train:
        raise FineTuneError(f"{where}: no train split to fine-tune on")
    if not allow_leakage:
        refuse_leakage(testset)
    lines = build_lines(testset)
    validate(lines, where)
    tokens = sum(approx_tokens(line["messages"]) for line in lines)
    epochs = n_epochs or DEFAULT_EPOCHS
    per_mtok = prices.training_price(base_model)
    cost = None if per_mtok is None else tokens * epochs * per_mtok / 1e6
    return TrainingFile(lines, tokens, epochs, per_mtok, cost)


def client(base_url: str | None, *, api_key_env: str = "OPENAI_API_KEY", max_retries: int = 5,
           timeout_s: float = 60.0):
    """A sync SDK client; the key comes from the environment only."""
    from openai import OpenAI

    key = os.environ.get(api_key_env)
    if not key and not base_url:
        raise FineTuneError(f"set {api_key_env} in the environment to fine-tune on OpenAI")
    return OpenAI(api_key=key or NO_KEY_PLACEHOLDER, base_url=base_url,
                  max_retries=max_retries, timeout=timeout_s)


def start(testset: Testset, finetune_dir: Path | str, *, sdk, base_model: str,
          training: TrainingFile, name: str | None = None, base_url: str | None = None,
          n_epochs: int | None = None, suffix: str | None = None,
          seed: int | None = 0) -> FineTuneRecord:
    """Upload the file, create the job, and write the record before any polling. The record
    is first written with the uploaded file's id (status `creating`), so a kill while the job
    is created leaves what `train` needs to find that job instead of paying for another."""
    name = name or default_name(testset, OpenAIProvider.name)
    uploaded = sdk.files.create(file=(f"{name}.jsonl", io.BytesIO(training.jsonl())),
                                purpose="fine-tune")
    pending = FineTuneRecord(
        name=name, provider=OpenAIProvider.name, base_model=base_model, fine_tuned_model="",
        status=CREATING, train_hash=train_hash(testset), trained_examples=len(training.lines),
        created_at=_now(), base_url=redact_url(base_url), training_file=uploaded.id)
    save_record(Path(finetune_dir), pending)
    kwargs: dict[str, Any] = {"model": base_model, "training_file": uploaded.id}
    if n_epochs:
        kwargs["method"] = {"type": "supervised",
                            "supervised": {"hyperparameters": {"n_epochs": n_epochs}}}
    if suffix:
        kwargs["suffix"] = suffix
    if seed is not None:
        kwargs["seed"] = seed
    job = _create_job(sdk, pending, kwargs)
    record = replace(pending, fine_tuned_model=job.fine_tuned_model or "", status=job.status,
                     job_id=job.id)
    save_record(Path(finetune_dir), record)
    return record


def _create_job(sdk, pending: FineTuneRecord, kwargs: dict[str, Any], *,
                sleep: Callable[[float], None] = time.sleep) -> Any:
    """`fine_tuning.jobs.create`, retried by hand rather than by the SDK: a create whose
    answer was lost (a timeout, a dropped connection, a 5xx after the server made the job)
    may have made the job, and the SDK would simply post it again and pay for two. Before
    each retry the account's latest jobs are searched for one over this upload
    (`unrecorded_job`), and that one is taken instead."""
    from openai import APIConnectionError, APIStatusError

    retries = max(0, int(getattr(sdk, "max_retries", 2) or 0))
    for attempt in range(retries + 1):
        try:
            sdk.max_retries = 0  # the SDK reads it per request: this one is tried once
            return sdk.fine_tuning.jobs.create(**kwargs)
        except (APIConnectionError, APIStatusError) as exc:  # timeouts are connection errors
            status = getattr(exc, "status_code", None)
            if attempt == retries or (status is not None and status < 500
                                           and status not in (408, 409, 429)):
                raise
            made = unrecorded_job(sdk, pending)
            if made is not None:
                return made
            sleep(min(8.0, 0.5 * 2 ** attempt))
        finally:
            sdk.max_retries = retries
    raise AssertionError("unreachable: the loop returns or raises")  # pragma: no cover


def unrecorded_job(sdk, record: FineTuneRecord | None) -> Any | None:
    """The job a killed session created over `record`'s uploaded file but never recorded
    (status `creating`), looked for among the account's latest jobs; None if there is none."""
    if record is None or record.status != CREATING or not record.training_file:
        return None
    for n, job in enumerate(sdk.fine_tuning.jobs.list(limit=100)):  # newest first, paged
        if getattr(job, "training_file", None) == record.training_file:
            return job
        if n >= 999:
            break
    return None


def poll(finetune_dir: Path | str, name: str, *, sdk, prices: PriceBook,
         interval_s: float = 30.0, timeout_s: float | None = None,
         echo: Callable[[str], None] = print, sleep: Callable[[float], None] = time.sleep,
         ) -> FineTuneRecord:
    """Follow the job until it ends (or `timeout_s`), printing new events; update the record."""
    finetune_dir = Path(finetune_dir)
    record = load_record(finetune_dir, name)
    if record is None:
        raise FineTuneError(f"{finetune_dir / (name + '.json')}: no such fine-tune record")
    if not record.job_id:
        raise FineTuneError(f"{finetune_dir / (name + '.json')}: field 'job_id' is empty: "
                            f"this model was registered, not trained by a job")
    seen: set[str] = set()
    started = time.monotonic()
    while True:
        job = sdk.fine_tuning.jobs.retrieve(record.job_id)
        events = sdk.fine_tuning.jobs.list_events(record.job_id, limit=50).data  # newest page
        for event in sorted(events, key=lambda e: (e.created_at, e.id)):
            if event.id not in seen:
                seen.add(event.id)
                echo(f"  event: {event.message}")
        if job.status != record.status or not seen:
            echo(f"status: {job.status}")
        record = _update(record, job, prices)
        save_record(finetune_dir, record)
        if job.status in TERMINAL:
            break
        if timeout_s is not None and time.monotonic() - started > timeout_s:
            echo(f"still {job.status}; resume with `evalkit finetune status {name}`")
            break
        sleep(interval_s)
    if record.status != "succeeded" and record.status in TERMINAL:
        error = getattr(job, "error", None)
        raise FineTuneError(f"fine-tuning job {record.job_id} {record.status}: "
                            f"{getattr(error, 'message', None) or 'no error message'}")
    return record


def existing_job(finetune_dir: Path | str, name: str, *, testset: Testset, base_model: str,
                 force: bool = False, echo: Callable[[str], None] = print,
                 ) -> FineTuneRecord | None:
    """The record a new job for `name` would overwrite: refuse, reuse, or let it be replaced.

    Raises FineTuneError while the recorded job is still in progress (a second job would be
    paid for and the first one's id lost); returns the record when it already holds a model
    trained from `base_model` on this train split (nothing to do); None when a new job may
    start. With `force`, always None, after echoing what is being replaced.
    """
    path = record_path(Path(finetune_dir), name)
    old = load_record(Path(finetune_dir), name)
    if old is None:
        return None
    running = old.job_id is not None and old.status not in TERMINAL
    same = (old.status == "succeeded" and bool(old.fine_tuned_model)
            and old.train_hash == train_hash(testset) and old.base_model == base_model)
    if force:
        if running:
            echo(f"--force: job {old.job_id} is still {old.status} and will keep running (and "
                 f"billing) unless cancelled; {path} will point at the new job")
        elif old.fine_tuned_model:
            echo(f"--force: replacing {path} (model {old.fine_tuned_model})")
        return None
    if running:
        raise FineTuneError(f"{path}: job {old.job_id} is still {old.status}; follow it with "
                            f"`evalkit finetune status {name}` (or pass --force to start and "
                            f"pay for a new job)")
    if same:
        echo(f"{path}: {old.fine_tuned_model} is already fine-tuned from {base_model} on this "
             f"train split; nothing to do (pass --force to train again)")
        return old
    if old.fine_tuned_model:
        why = ("a different base model" if old.base_model != base_model
               else "a different train split")
        echo(f"{path}: replacing {old.fine_tuned_model} (trained from {why})")
    elif old.job_id:
        echo(f"{path}: job {old.job_id} {old.status}; starting a new one")
    return None


def train(testset: Testset, finetune_dir: Path | str, *, base_model: str,
          base_url: str | None = None, config: ExperimentConfig | None = None,
          name: str | None = None,
          n_epochs: int | None = None, suffix: str | None = None, allow_leakage: bool = False,
          dry_run: bool = False, out: Path | str | None = None, interval_s: float = 30.0,
          timeout_s: float | None = None, max_retries: int = 5, force: bool = False,
          echo: Callable[[str], None] = print) -> FineTuneRecord | None:
    """`evalkit finetune --provider openai`: prepare, report the estimate, start, follow.

    Checks the existing record first (`existing_job`), so a re-run after Ctrl-C refuses
    instead of paying for a second job; returns the existing record when it is up to date.
    """
    name = name or default_name(testset, OpenAIProvider.name)
    cfg = config or ExperimentConfig()
    prices = PriceBook.from_section(cfg.section("pricing"), path=cfg.path)
    old = None if dry_run else load_record(Path(finetune_dir), name)
    if old is not None and old.status == CREATING and old.base_model == base_model:
        sdk = client(base_url or old.base_url, max_retries=max_retries)
        job = unrecorded_job(sdk, old)
        if job is not None:  # a kill while creating it: follow that job, do not pay again
            save_record(Path(finetune_dir), replace(old, job_id=job.id, status=job.status))
            echo(f"job {job.id} was created over {old.training_file} by a session that "
                 f"ended before recording it; following it (record: "
                 f"{record_path(Path(finetune_dir), name)})")
            return poll(finetune_dir, name, sdk=sdk, prices=prices, interval_s=interval_s,
                        timeout_s=timeout_s, echo=echo)
    if not dry_run:
        done = existing_job(finetune_dir, name, testset=testset, base_model=base_model,
                            force=force, echo=echo)
        if done is not None:
            return done
    training = prepare(testset, base_model=base_model, prices=prices, n_epochs=n_epochs,
                       allow_leakage=allow_leakage)
    cost = ("unknown (set pricing.training_per_mtok for this base model)"
            if training.estimated_cost_usd is None else f"${training.estimated_cost_usd:.4f}")
    echo(f"{len(training.lines)} examples, ~{training.tokens_per_epoch} tokens per epoch, "
         f"{training.epochs} epochs: estimated training cost {cost}")
    if out:
        Path(out).write_bytes(training.jsonl())
        echo(f"wrote {out}")
    if dry_run:
        return None
    sdk = client(base_url, max_retries=max_retries)
    record = start(testset, finetune_dir, sdk=sdk, base_model=base_model, training=training,
                   name=name, base_url=base_url, n_epochs=n_epochs, suffix=suffix)
    echo(f"job {record.job_id} created ({record.status}); record: "
         f"{Path(finetune_dir) / (record.name + '.json')}")
    return poll(finetune_dir, record.name, sdk=sdk, prices=prices, interval_s=interval_s,
                timeout_s=timeout_s, echo=echo)


def status(finetune_dir: Path | str, name: str, *, base_url: str | None = None,
           config: ExperimentConfig | None = None, interval_s: float = 30.0,
           timeout_s: float | None = None, echo: Callable[[str], None] = print
           ) -> FineTuneRecord:
    """`evalkit finetune status NAME`: resume following a job from its record."""
    record = load_record(Path(finetune_dir), name)
    if record is None:
        raise FineTuneError(f"{Path(finetune_dir) / (name + '.json')}: no such fine-tune")
    if record.status in TERMINAL or not record.job_id:
        return record
    cfg = config or ExperimentConfig()
    prices = PriceBook.from_section(cfg.section("pricing"), path=cfg.path)
    sdk = client(base_url or record.base_url)
    return poll(finetune_dir, name, sdk=sdk, prices=prices, interval_s=interval_s,
                timeout_s=timeout_s, echo=echo)


def _update(record: FineTuneRecord, job: Any, prices: PriceBook) -> FineTuneRecord:
    trained = getattr(job, "trained_tokens", None)
    cost = record.training_cost_usd
    per_mtok = prices.training_price(record.base_model)
    if trained and per_mtok is not None:
        cost = trained * per_mtok / 1e6
    elapsed = record.training_time_s
    if getattr(job, "finished_at", None) and getattr(job, "created_at", None):
        elapsed = float(job.finished_at - job.created_at)
    return replace(record, status=job.status, fine_tuned_model=job.fine_tuned_model or "",
                   trained_tokens=trained, training_cost_usd=cost, training_time_s=elapsed)


def register(finetune_dir: Path | str, name: str, *, model: str, base_url: str | None = None,
             base_model: str = "", gpu_hours: float | None = None,
             usd_per_hour: float | None = None, testset: Testset | None = None,
             allow_leakage: bool = False, force: bool = False) -> FineTuneRecord:
    """Record a model trained elsewhere, with its training cost (GPU-hours × $/hour).

    With `testset`, its train split's hash is recorded and, unless `allow_leakage`, a test
    split leaking into that train split is refused as for the other fine-tune paths. It will
    not overwrite the record of a job still in progress unless `force`.
    """
    if (gpu_hours is None) != (usd_per_hour is None):
        raise FineTuneError("give both --gpu-hours and --usd-per-hour, or neither")
    for field, value in (("gpu_hours", gpu_hours), ("usd_per_hour", usd_per_hour)):
        if value is not None and (not math.isfinite(value) or value < 0):
            raise FineTuneError(f"{field} must be a number >= 0, got {value!r}")
    if base_url and redact_url(base_url) != base_url:
        raise FineTuneError("no credentials in --base-url: the record is written to disk")
    if testset is not None and not allow_leakage:
        refuse_leakage(testset)
    old = load_record(Path(finetune_dir), name)
    if old is not None and old.job_id and old.status not in TERMINAL and not force:
        raise FineTuneError(f"{record_path(Path(finetune_dir), name)}: job {old.job_id} is "
                            f"still {old.status}; registering would lose it (follow it with "
                            f"`evalkit finetune status {name}`, or pass --force)")
    record = FineTuneRecord(
        name=name, provider=OpenAIProvider.name, base_model=base_model, fine_tuned_model=model,
        status="succeeded", train_hash=train_hash(testset) if testset else "",
        trained_examples=len(testset.train) if testset else 0,
        training_time_s=(gpu_hours or 0.0) * 3600.0,  # GPU time
        training_cost_usd=(gpu_hours or 0.0) * (usd_per_hour or 0.0),
        created_at=_now(), job_id=None, base_url=base_url)
    save_record(Path(finetune_dir), record)
    return record


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
