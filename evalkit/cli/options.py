"""Options several commands share, resolved one way: `run`, `estimate` and `testset check`
take `--provider` with the same default and check `--base-url`/`--model` the same way, so an
estimate or a pre-flight describes the run the same flags would start."""

from __future__ import annotations

import click

from evalkit.cli.app import fail
from evalkit.config import refuse_flag_secrets

DEFAULT_PROVIDER = "local"  # offline and free: what a first `evalkit run` uses

provider_option = click.option(
    "--provider", default=DEFAULT_PROVIDER, show_default=True,
    help="local (offline, notional cost) or openai (OpenAI or any OpenAI-compatible server).")


def provider_options(provider: str, base_url: str | None, model: str | None) -> dict[str, str]:
    """The provider options a command passes on, after the checks `run` makes; a usage error
    (exit 2) when they fail."""
    try:
        return check_provider_options(provider, base_url, model)
    except ValueError as exc:
        fail(str(exc))


def check_provider_options(provider: str, base_url: str | None, model: str | None
                           ) -> dict[str, str]:
    """The same checks, raising ValueError (so `testset check` can list it as a refusal): a
    known provider; --base-url and --model only for a server-backed one; no credential in a
    flag (flags are copied into run.json)."""
    from evalkit.providers import provider_class
    cls = provider_class(provider)
    if not cls.takes_server_options and (base_url or model):
        raise ValueError(f"--base-url and --model are for a server-backed provider (e.g. "
                         f"--provider openai); the {provider} provider has neither")
    refuse_flag_secrets({"base_url": base_url, "model": model})
    return {k: v for k, v in (("base_url", base_url), ("model", model)) if v}


def server_options(func):
    """--base-url and --model, worded alike wherever a command starts (or checks) a run."""
    func = click.option("--model", default=None,
                        help="Model for the non-fine-tuned rungs.")(func)
    return click.option("--base-url", default=None, help="OpenAI-compatible server, e.g. "
                        "http://127.0.0.1:8000/v1 (else config, else OPENAI_BASE_URL). Key: "
                        "env only.")(func)
