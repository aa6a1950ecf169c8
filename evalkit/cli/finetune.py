"""`evalkit finetune ...`: train, follow or register the fine-tuned rung's model."""

from __future__ import annotations

from pathlib import Path

import click

from evalkit.cli.app import fail, main
from evalkit.data.testset import TestsetError, load_testset


class _TrainByDefault(click.Group):
    """`evalkit finetune TESTSET ...` means `evalkit finetune train TESTSET ...`."""

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["train", *args]
        return super().parse_args(ctx, args)


@main.group(cls=_TrainByDefault)
def finetune():
    """Fine-tune the fine-tuned rung's model: train (default), status, register."""


@finetune.command("train")
@click.argument("testset_dir", type=click.Path(file_okay=False))
@click.option("--provider", default="local", show_default=True)
@click.option("--finetune-dir", default="finetunes", show_default=True)
@click.option("--allow-leakage", is_flag=True)
@click.option("--model", "base_model", default="gpt-4o-mini-2024-07-18", show_default=True,
              help="openai: the base model to fine-tune.")
@click.option("--base-url", default=None, help="openai: an OpenAI-compatible fine-tuning API.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="Experiment config (pricing.training_per_mtok).")
@click.option("--epochs", type=click.IntRange(1, 50), default=None)
@click.option("--dry-run", is_flag=True, help="openai: validate and estimate, upload nothing.")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="openai: also write the training JSONL here (to train elsewhere).")
@click.option("--poll-interval", type=float, default=30.0, show_default=True)
@click.option("--force", is_flag=True, help="openai: start a new job even if the record names "
              "one in progress or an up-to-date model.")
def finetune_train(testset_dir, provider, finetune_dir, allow_leakage, base_model, base_url,
                   config_path, epochs, dry_run, out, poll_interval, force):
    """Train the fine-tuned rung's model on TESTSET_DIR's train split."""
    from evalkit.config import load_config
    from evalkit.providers import FineTuneOptions, provider_class  # deferred: sklearn, openai
    from evalkit.providers import openai_finetune as ft_openai
    from evalkit.strategies import finetune as ft
    try:
        cls = provider_class(provider)
    except ValueError as exc:
        fail(f"finetune --provider {provider}: {exc}")
    try:
        config = load_config(config_path)
    except ValueError as exc:
        fail(str(exc))
    options = FineTuneOptions(base_model=base_model, base_url=base_url, config=config,
                              n_epochs=epochs, allow_leakage=allow_leakage, dry_run=dry_run,
                              out=out, interval_s=poll_interval, force=force, echo=click.echo)
    try:
        record = cls.fine_tune(load_testset(testset_dir), finetune_dir, options)
    except (TestsetError, ft.LeakageError, ValueError, ft_openai.FineTuneError) as exc:
        fail(str(exc))
    if record is None:  # a dry run: nothing trained
        return
    if record.job_id:  # a job on a fine-tuning API: its status and what it cost
        _print_finetune(record, finetune_dir)
        return
    click.echo(f"trained {record.fine_tuned_model} on {record.trained_examples} examples in "
               f"{record.training_time_s:.2f}s (notional ${record.training_cost_usd:.6f}); "
               f"record: {ft.record_path(Path(finetune_dir), record.name)}")


@finetune.command("status")
@click.argument("name")
@click.option("--finetune-dir", default="finetunes", show_default=True)
@click.option("--base-url", default=None, help="Default: the one the record was started with.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None)
@click.option("--poll-interval", type=float, default=30.0, show_default=True)
@click.option("--wait/--no-wait", default=True, help="Follow the job until it ends.")
def finetune_status(name, finetune_dir, base_url, config_path, poll_interval, wait):
    """Show (and keep following) the fine-tuning job recorded as finetunes/NAME.json."""
    from evalkit.config import load_config
    from evalkit.providers import openai_finetune as ft_openai  # deferred: sklearn, openai
    try:
        record = ft_openai.status(finetune_dir, name, base_url=base_url,
                                  config=load_config(config_path),
                                  interval_s=poll_interval, timeout_s=None if wait else 0.0,
                                  echo=click.echo)
    except (ValueError, ft_openai.FineTuneError) as exc:
        fail(str(exc))
    _print_finetune(record, finetune_dir)


@finetune.command("register")
@click.argument("name")
@click.option("--model", required=True, help="The name the server serves it under.")
@click.option("--base-url", default=None, help="Its server, if not the run's --base-url.")
@click.option("--base-model", default="", help="What it was trained from (for the record).")
@click.option("--gpu-hours", type=float, default=None)
@click.option("--usd-per-hour", type=float, default=None)
@click.option("--testset", "testset_dir", type=click.Path(file_okay=False), default=None,
              help="The test set whose train split it was trained on (records its hash).")
@click.option("--finetune-dir", default="finetunes", show_default=True)
@click.option("--allow-leakage", is_flag=True, help="Register even if test items leak into train.")
@click.option("--force", is_flag=True, help="Overwrite the record of a job still in progress.")
def finetune_register(name, model, base_url, base_model, gpu_hours, usd_per_hour, testset_dir,
                      finetune_dir, allow_leakage, force):
    """Record a model trained elsewhere (vLLM/Ollama/llama.cpp LoRA) as fine-tune NAME.

    Name it <testset>-openai for `evalkit run --provider openai` to use it."""
    from evalkit.providers import openai_finetune as ft_openai  # deferred: sklearn, openai
    from evalkit.strategies import finetune as ft
    try:
        record = ft_openai.register(
            finetune_dir, name, model=model, base_url=base_url, base_model=base_model,
            gpu_hours=gpu_hours, usd_per_hour=usd_per_hour,
            testset=load_testset(testset_dir) if testset_dir else None,
            allow_leakage=allow_leakage, force=force)
    except (TestsetError, ft.LeakageError, ValueError, ft_openai.FineTuneError) as exc:
        fail(str(exc))
    _print_finetune(record, finetune_dir)


def _print_finetune(record, finetune_dir) -> None:
    from evalkit.strategies import finetune as ft
    tokens = f", {record.trained_tokens} trained tokens" if record.trained_tokens else ""
    click.echo(f"{record.name}: {record.status}, model {record.fine_tuned_model or '-'}"
               f"{tokens}, training cost ${record.training_cost_usd:.4f}; "
               f"record: {ft.record_path(Path(finetune_dir), record.name)}")
