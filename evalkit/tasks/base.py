"""The two registries every stage reads: task types and metrics (DESIGN §2, §6; issue 11.1).

A `TaskType` says what one kind of task is: how an item's `expected` is checked, which
metrics it may be scored on (the first per-item one is the default primary), how a raw model
output is parsed for scoring, and how a request asks for structured output. A `Metric` says,
once, what one metric is: per item or per run, which task types it applies to, its range, its
direction, whether it is 0/1, and how it is computed. Validation (data), scoring, analysis,
the report and the gate read these specs; none of them names a task type or a metric.

Adding one is one module that calls `register_task_type` / `register_metric` (and, for the
built-in ones, one import line in `evalkit/tasks/__init__.py`). What the local provider does
for a task type is its own lookup (`evalkit.providers.local.LOCAL_ANSWERERS`), since that code
lives in a later stage than validation.

Stage 1 with `data` (which imports this package to validate task.yaml and items): at import
it needs only stage 0, and third-party libraries only inside the compute functions that need
them; the `Scaffold` hooks of the built-ins import data's importers when `evalkit init` calls
them (a top-level import would be circular, data importing this package).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from evalkit.registry import Registry

if TYPE_CHECKING:  # same stage; imported for type names only (data imports this package)
    import numpy as np

    from evalkit.data.testset import Item, Task

Level = Literal["item", "run"]
Group = Literal["quality", "retrieval", "cost"]

# Task types the design names (DESIGN §3). One of these that no module has registered yet is
# refused at load as "reserved but not built yet", never accepted and failed later.
DESIGNED_TASK_TYPES = ("classification", "qa", "extraction", "generation")


@dataclass(frozen=True)
class ItemContext:
    """What a per-item metric sees: the raw output (None when the call failed), the task
    type's parse of it, the item, what the variant retrieved (doc ids, and the text of each
    passage shown), the journaled prediction (tokens, latency, cost) and any score made
    elsewhere for it (`external`: the judge's)."""

    task: Task
    item: Item
    output: str | None
    parsed: Any
    retrieved: tuple[str, ...] = ()
    prediction: Any = None
    passages: tuple[str, ...] = ()
    # scores made outside this process for this answer, by metric name (the LLM judge's)
    external: Mapping[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.output is not None


@dataclass(frozen=True)
class RunContext:
    """What a per-run metric sees: the scorable items' expected values and parsed outputs.

    In a step's paired comparison a failed call counts as a wrong answer, so `parsed` holds
    None for it (as for an output that did not parse): a run metric must read None as an
    answer that is wrong, never fail on it."""

    task: Task
    expected: list[Any]
    parsed: list[Any]


ItemCompute = Callable[[ItemContext], "float | None"]  # None: no row for this item
# A per-run metric returns a statistic over item indices, so the analysis can bootstrap it.
RunCompute = Callable[[RunContext], "Callable[[np.ndarray], float] | None"]


@dataclass(frozen=True)
class Metric:
    """One metric, declared once.

    `group`: quality metrics are scored when task.yaml asks for them (NaN on a failed call);
    retrieval metrics wherever a variant retrieved and the item has gold `doc_ids`; cost
    metrics (latency, tokens, dollars) on every answered item and gated as costs.
    """

    name: str
    level: Level
    compute: ItemCompute | RunCompute
    task_types: tuple[str, ...] | None = None  # None: every task type
    range: tuple[float, float] = (0.0, 1.0)
    higher_is_better: bool = True
    binary: bool = False  # every per-item value is 0 or 1 (Wilson/McNemar apply)
    group: Group = "quality"
    description: str = ""
    # whether the metric applies to this answer at all (groundedness: only where passages were
    # retrieved); None: always. Where it does not apply no score is written, not a 0 or a NaN,
    # and `not_applicable` is what summary.json says instead
    applies: Callable[[ItemContext], bool] | None = None
    not_applicable: str = ""
    # never in task.yaml's default metric list, and scored wherever it applies whether named
    # or not (the LLM judge's score: there once the judge has graded the run)
    opt_in: bool = False

    def applies_to(self, task_type: str) -> bool:
        return self.task_types is None or task_type in self.task_types

    @property
    def bounded(self) -> bool:
        """Both ends finite: intervals can be clipped to the range."""
        return math.isfinite(self.range[0]) and math.isfinite(self.range[1])


def _no_structured_output(task: Task) -> dict[str, Any] | None:
    return None


def _raw(output: str, task: Task) -> Any:
    return output


def _first_reference(item: Item, task: Task) -> str:
    return item.references[0]


Rows = Sequence[Mapping[str, Any]]


@dataclass(frozen=True)
class Scaffold:
    """What `evalkit init` knows of one task type: how to read a user's file as this type's
    items and how well the file looks like one, so init infers, reads and drafts a type with
    no knowledge of its own (evalkit/data/scaffold.py names no type).

    `fit(rows)` scores how well a file's rows look like this type, 0 (not at all) to 1
    (certainly); init asks every registered type that reads the file's format and takes the
    highest score, a tie going to the type registered first. The rows are the file's own
    (a JSONL line's keys, a CSV row's columns); for items already in evalkit's format (a
    folder's test.jsonl, a chat file's turns) they hold only `expected`, since every type's
    items share the other keys. `read(path, text_key=, target_key=)` returns the file's items
    ({id, input, expected, ...}, errors as TestsetError naming file, line and field; the
    keys are the user's --text-column / --label-column, None to guess). `formats`: what
    `read` takes ("jsonl", "csv"). `instructions`: the task.yaml instructions init writes
    for the user to edit. `stratum(item)`: what the train/test split keeps in proportion
    (None: nothing), `stratum_name` how the data card says it. `fields`: `expected` is a JSON
    record, whose keys init lists as task.yaml's `fields`.
    """

    fit: Callable[[Rows], float]
    read: Callable[..., list[dict[str, Any]]]
    instructions: str
    formats: tuple[str, ...] = ("jsonl",)
    stratum: Callable[[Mapping[str, Any]], Any] | None = None
    stratum_name: str = "nothing"
    fields: bool = False


@dataclass(frozen=True)
class TaskType:
    """One kind of task.

    `check_expected(expected, task)` raises ValueError with a message (the loader adds file,
    line and field); `metrics` are the metric names this type may be scored on, in order, the
    first per-item one being the default primary; `parse(output, task)` turns a raw answer into
    what metrics compare (a label, a JSON object, the text itself); `response_format(task)` is
    what a request sends as the OpenAI `response_format` (None: plain text); `uses_labels`
    makes task.yaml's `labels` required and checked; `options` are the task.yaml keys only
    this type reads; `target(item, task)` is the answer a few-shot example or a fine-tuning
    line shows for an item; `abstains(output, task)`, where the type can decline to answer
    (qa), says whether an output abstains (None: it cannot). `default_output_tokens` is
    the output a request of this type may use unless the provider's config overrides it (a
    label needs a few tokens, a long-form answer hundreds; None: the provider's default);
    `scaffold` is what `evalkit init` needs to infer, read and draft the type (None: init
    neither infers nor offers it).
    """

    name: str
    check_expected: Callable[[Any, Task], None]
    metrics: tuple[str, ...]
    parse: Callable[[str, Task], Any] = _raw
    response_format: Callable[[Task], dict[str, Any] | None] = _no_structured_output
    uses_labels: bool = False
    target: Callable[[Item, Task], str] = _first_reference
    abstains: Callable[[str, Task], bool] | None = None
    description: str = ""
    # task.yaml keys only this type reads: key -> check(value) returning the value to keep in
    # `Task.options`, raising ValueError with a message (the loader adds file, line, field)
    options: dict[str, Callable[[Any], Any]] = field(default_factory=dict)
    default_output_tokens: int | None = None
    scaffold: Scaffold | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    # why an answer scored what it did, in a sentence for the report's item explorer
    # (expected, the answer's text, the task): "total: expected '5', answered '6'"; None
    # when there is nothing to say beyond the score (or the type cannot say it)
    explain: Callable[[Any, str, Task], str | None] | None = None

    def allowed_metrics(self) -> tuple[str, ...]:
        """The quality metrics task.yaml may name for this type: the declared ones, then any
        other registered quality metric that applies to it (a plug-in added later)."""
        declared = [m for m in self.metrics if m in METRICS]
        added = [m.name for m in METRICS.values() if m.group == "quality"
                 and m.applies_to(self.name) and m.name not in declared]
        return (*declared, *added)

    def item_metrics(self) -> tuple[str, ...]:
        return tuple(m for m in self.allowed_metrics() if METRICS.get(m).level == "item")

    @property
    def default_primary(self) -> str:
        items = self.item_metrics()
        if not items:
            raise ValueError(f"task type {self.name!r} declares no per-item metric")
        return items[0]


TASK_TYPES: Registry[TaskType] = Registry("task type")
METRICS: Registry[Metric] = Registry("metric")


def register_task_type(spec: TaskType, *, replace: bool = False) -> TaskType:
    return TASK_TYPES.register(spec.name, spec, replace=replace)


def register_metric(spec: Metric, *, replace: bool = False) -> Metric:
    if spec.level not in ("item", "run"):
        raise ValueError(f"metric {spec.name!r}: level must be 'item' or 'run'")
    return METRICS.register(spec.name, spec, replace=replace)


def task_type(name: str) -> TaskType:
    return TASK_TYPES.get(name)


def scaffolded_types(fmt: str | None = None) -> tuple[str, ...]:
    """The registered types `evalkit init` can draft (from a file of format `fmt`: "jsonl",
    "csv"; None: any), in registration order."""
    return tuple(t.name for t in TASK_TYPES.values() if t.scaffold is not None
                 and (fmt is None or fmt in t.scaffold.formats))


# Requests of no task type (the LLM judge's) -> the output tokens they may use by default; the
# module that sends them files its entry here, beside the task types' own defaults.
REQUEST_OUTPUT_TOKENS: Registry[int] = Registry("request kind")


def output_token_defaults() -> dict[str, int]:
    """Request task type -> the output tokens it may use by default: every task type that
    declares one, and the other request kinds (a provider's config may override each)."""
    out = {t.name: t.default_output_tokens for t in TASK_TYPES.values()
           if t.default_output_tokens is not None}
    return {**out, **{name: REQUEST_OUTPUT_TOKENS.get(name) for name in REQUEST_OUTPUT_TOKENS}}


def metric(name: str) -> Metric:
    return METRICS.get(name)


def metric_names(*, task_type: str | None = None, level: Level | None = None,
                 group: Group | None = None) -> tuple[str, ...]:
    """Registered metric names, filtered (like scikit-learn's `get_scorer_names()`)."""
    return tuple(m.name for m in METRICS.values()
                 if (task_type is None or m.applies_to(task_type))
                 and (level is None or m.level == level) and (group is None or m.group == group))


def metrics_in(group: Group) -> tuple[str, ...]:
    return metric_names(group=group)


def higher_is_better(name: str) -> bool:
    """A metric's direction; a name no module registered (an old baseline's) counts as
    higher-is-better, which is what every quality metric evalkit has written so far is."""
    spec = METRICS.find(name)
    return True if spec is None else spec.higher_is_better


def bounds(name: str) -> tuple[float, float] | None:
    """A registered metric's finite range, else None (nothing to clip to)."""
    spec = METRICS.find(name)
    return spec.range if spec is not None and spec.bounded else None


def quality_metrics(task: Task) -> tuple[str, ...]:
    """The per-item quality metrics task.yaml asks for (primary first); a Task built in code
    without metric names gets its type's per-item defaults."""
    declared = tuple(m for m in task.metrics if (spec := METRICS.find(m)) is not None
                     and spec.level == "item" and spec.group == "quality"
                     and spec.applies_to(task.type))
    return declared or task_type(task.type).item_metrics()


def run_metrics(task_type_name: str, names: Sequence[str]) -> tuple[Metric, ...]:
    """The per-run metrics among `names` that apply to this task type."""
    out = []
    for name in names:
        spec = METRICS.find(name)
        if spec is not None and spec.level == "run" and spec.applies_to(task_type_name):
            out.append(spec)
    return tuple(out)
