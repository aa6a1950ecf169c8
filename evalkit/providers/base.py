"""What every provider returns, and the interface the runner calls.

Providers never import the runner: they take one Request and return one Completion.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from evalkit.config import ExperimentConfig
from evalkit.strategies.request import Request

if TYPE_CHECKING:
    from evalkit.data.testset import Testset
    from evalkit.providers.pricing import PriceBook
    from evalkit.strategies.finetune import FineTuneRecord


@dataclass(frozen=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0


@dataclass(frozen=True)
class Completion:
    """One answer. `cost_usd` is notional: a cache hit keeps the cost it had when it was paid."""

    text: str
    usage: Usage = field(default_factory=Usage)
    latency_s: float = 0.0
    cost_usd: float = 0.0
    model: str = ""
    cached: bool = False

    def to_dict(self) -> dict[str, Any]:
        """`dataclasses.asdict(self)` without its generic deep copy (once per fresh answer)."""
        u = self.usage
        return {"text": self.text, "usage": {"input_tokens": u.input_tokens,
                                             "output_tokens": u.output_tokens,
                                             "cached_input_tokens": u.cached_input_tokens},
                "latency_s": self.latency_s, "cost_usd": self.cost_usd, "model": self.model,
                "cached": self.cached}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Completion:
        return cls(**{**d, "usage": Usage(**d.get("usage", {}))})


@dataclass(frozen=True)
class Generation:
    """Generation parameters a variant (or an epoch) sets; None: the provider's default.

    A provider applies those it has (the openai provider sends all three; the local one is
    deterministic and takes none)."""

    temperature: float | None = None
    max_tokens: int | None = None
    seed: int | None = None
    epoch: int = 0  # the repetition (`--epochs`); a provider that takes a seed adds it


@dataclass(frozen=True)
class ProviderSetup:
    """What a run hands a provider class to build itself (`Provider.from_config`).

    `options`: the CLI flags and programmatic options (None values already dropped);
    `config`: the experiment config (read once by the command), whose `provider:`/`pricing:`
    sections a provider may read; `generation`: a variant's or epoch's generation parameters,
    over the config's; `fine_tune`: the fine-tune record of the run's fine-tuned rungs (a
    dict), if any; `finetune_dir`: where fine-tune records and artifacts live; `calls`: False
    when nothing will be called (`evalkit estimate`), so credentials need not be present.
    """

    options: dict[str, Any] = field(default_factory=dict)
    config: ExperimentConfig = field(default_factory=ExperimentConfig)
    generation: Generation = field(default_factory=Generation)
    fine_tune: dict[str, Any] | None = None
    finetune_dir: str = "finetunes"
    calls: bool = True


@dataclass(frozen=True)
class FineTuneOptions:
    """`evalkit finetune` flags; a provider reads those it has a use for."""

    base_model: str | None = None
    base_url: str | None = None
    config: ExperimentConfig = field(default_factory=ExperimentConfig)
    n_epochs: int | None = None
    allow_leakage: bool = False
    dry_run: bool = False
    out: str | None = None
    interval_s: float = 30.0
    force: bool = False
    echo: Callable[[str], None] = print


class ServerUnreachable(RuntimeError):
    """The provider cannot reach its server at all: the run stops instead of failing every
    item in turn. The message names the server and what to check."""


class Provider:
    """The interface the runner calls: one abstract `complete`, and optional hooks whose
    defaults say "this provider has no such thing" (the pattern of Inspect's `ModelAPI` and
    promptfoo's `cleanup?`), so no caller probes with `getattr` or compares provider names.

    A provider lives in one module and is registered under its `name` in
    `evalkit.providers.PROVIDERS`; it overrides only the hooks it has.
    """

    name: ClassVar[str] = ""
    model: str = ""  # the default model it calls (instances set theirs)
    # Whether --base-url / --model mean anything to it (a server-backed provider).
    takes_server_options: ClassVar[bool] = True
    # True: nobody is billed (offline); its costs are only for comparing variants.
    cost_is_notional: ClassVar[bool] = False
    # False: the same request always gets the same answer (the local provider), so repeated
    # epochs cannot differ and a run with --epochs says so instead of reporting noise.
    samples: ClassVar[bool] = True
    # True: it sends the Request as chat messages (`Request.messages()`, what the run records
    # in messages.jsonl); False: it reads the Request's fields (the local provider), and the
    # recorded messages are the Request rendered as an LLM would have received it.
    sends_messages: ClassVar[bool] = True

    def model_for(self, request: Request) -> str:
        """The model that will answer this request (the request may pin one)."""
        return request.model or ""

    def cache_params(self) -> dict[str, Any]:
        """Generation parameters that change the answer, for the cache key. Never secrets."""
        return {}

    async def complete(self, request: Request) -> Completion:
        """Answer one request; raise on failure (the runner records it per item)."""
        raise NotImplementedError

    # --- optional hooks ---------------------------------------------------------------------

    def estimate_cost(self, request: Request) -> float | None:
        """The most one call can cost, for the budget check (`--max-cost-usd` is only a
        guarantee when this is a true bound); None: no bound (the runner then reserves the
        dearest call seen so far, a best effort)."""
        return None

    def transport_counts(self) -> dict[str, int] | None:
        """HTTP attempts sent (retries included) and connection failures, for run.json;
        None: not an HTTP provider."""
        return None

    @property
    def output_limit_ignored(self) -> str | None:
        """How the server showed it ignores output limits (None: it has not)."""
        return None

    def usage_estimated(self) -> int:
        """Answers whose server counted no tokens, billed at an upper bound instead (their
        cost then reads high: the run says how many; 0: none, or not token-billed)."""
        return 0

    def cut_at_limit(self) -> int:
        """Answers the server cut at the output limit so far (finish_reason "length"): each
        is scored as cut, so the run says how many (0: none, or the provider cannot tell)."""
        return 0

    def price_book(self) -> PriceBook | None:
        """The token prices it bills with, for `evalkit estimate`; None: not token-priced."""
        return None

    @property
    def max_output_tokens(self) -> int | None:
        """A hard cap on answer tokens, when the provider sends one."""
        return None

    @classmethod
    def check_task_type(cls, task_type: str) -> None:
        """Raise ValueError when this provider cannot answer `task_type` at all, so a run
        refuses before any call instead of journaling the same failure for every item.
        Default: any type (a server model can be asked anything)."""

    # Whether `batches` gives a Batch API client (`evalkit run --batch`).
    supports_batches: ClassVar[bool] = False

    def batches(self, base_url: str | None = None) -> Any:
        """The Batch API client for one of its servers (only if `supports_batches`)."""
        raise NotImplementedError(f"provider {self.name!r} has no batch API")

    def server_for(self, model: str) -> str | None:
        """The base URL of the server that answers `model` (None: the default, or none)."""
        return None

    async def aclose(self) -> None:
        """Release connections; the runner awaits it inside the loop that used them."""

    @classmethod
    def from_config(cls, setup: ProviderSetup) -> Provider:
        """Build the provider for a run from options and the experiment config."""
        return cls(**setup.options)

    @classmethod
    def fine_tune_missing(cls, testset: Testset, finetune_dir: str) -> str | None:
        """Why `fine_tune_for_run` would fail, found without training or calling anything
        (the run's pre-flight and `testset check` ask); None when it would succeed. By
        default: no record of a fine-tuned model for this provider."""
        from evalkit.strategies import finetune  # deferred: scikit-learn

        name = finetune.default_name(testset, cls.name)
        record = finetune.load_record(Path(finetune_dir), name)
        if record is None or not record.fine_tuned_model:
            return (f"{finetune.record_path(Path(finetune_dir), name)}: no fine-tuned model "
                    f"recorded; run `evalkit finetune` or `evalkit finetune register` first")
        return None

    @classmethod
    def recorded_fine_tune(cls, testset: Testset, finetune_dir: str) -> FineTuneRecord | None:
        """The fine-tuned model a run's fine-tuned rungs would call, when it is known before
        the run starts (recorded by `evalkit finetune` or `finetune register`), so the
        pre-flight can price it and route to its server without training or calling
        anything; None when none is recorded, or when the model is trained at run time."""
        from evalkit.strategies import finetune  # deferred: scikit-learn

        return finetune.load_record(Path(finetune_dir), finetune.default_name(testset, cls.name))

    @classmethod
    def fine_tune_for_run(cls, testset: Testset, finetune_dir: str) -> FineTuneRecord:
        """The fine-tuned model a run's fine-tuned rungs call: by default the one a previous
        `evalkit finetune` (or `finetune register`) recorded for this provider."""
        from evalkit.strategies import finetune  # deferred: scikit-learn

        problem = cls.fine_tune_missing(testset, finetune_dir)
        if problem:
            raise FileNotFoundError(problem)
        return finetune.load_record(Path(finetune_dir), finetune.default_name(testset, cls.name))

    @classmethod
    def fine_tune(cls, testset: Testset, finetune_dir: str, options: FineTuneOptions
                  ) -> FineTuneRecord | None:
        """Train this provider's fine-tuned model on the train split (`evalkit finetune`);
        None when nothing was trained (a dry run)."""
        raise ValueError(f"provider {cls.name!r} cannot fine-tune; train the model elsewhere "
                         f"and record it with `evalkit finetune register`")
