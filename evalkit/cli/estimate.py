"""`evalkit estimate`: tokens and dollars of a run before any call."""

from __future__ import annotations

import json

import click

from evalkit.cli.app import fail, main
from evalkit.cli.options import provider_option, provider_options
from evalkit.data.testset import TestsetError
from evalkit.strategies.ladder import LADDER


@main.command()
@click.argument("testset_dir", type=click.Path(file_okay=False))
@click.option("--variants", default=",".join(LADDER),
              help="Comma-separated ladder, as `run` takes it [default: the config's variants, "
                   f"else {','.join(LADDER)}].")
@provider_option
@click.option("--base-url", default=None)
@click.option("--model", default=None)
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None)
@click.option("--cache-dir", default=".evalkit-cache", show_default=True)
@click.option("--finetune-dir", default="finetunes", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the estimate as JSON.")
def estimate(testset_dir, variants, provider, base_url, model, config_path, cache_dir,
             finetune_dir, as_json):
    """Expected tokens and cost of `evalkit run` on TESTSET_DIR, before any call."""
    from evalkit.config import load_config
    from evalkit.run.estimate import estimate_run, format_estimate
    given = click.get_current_context().get_parameter_source("variants")
    try:
        config = load_config(config_path)
        names = variants.split(",")
        if given is click.core.ParameterSource.DEFAULT and config.variants:
            names = [d.name for d in config.variants]  # what `run` would start, as run does
        est = estimate_run(testset_dir, variants=names, provider=provider,
                           provider_options=provider_options(provider, base_url, model),
                           config=config, cache_dir=cache_dir, finetune_dir=finetune_dir)
    except (TestsetError, ValueError) as exc:
        fail(str(exc))
    click.echo(json.dumps(est.to_dict(), indent=2) if as_json else format_estimate(est))
