"""Which server a rung was answered by is what run.json records, however it was given: the
analysis charges self-hosting (summary.json `fixed_monthly_usd`) only to your own server, and
it can only tell from run.json. The --base-url flag was the only source it read, so the same
local server named by OPENAI_BASE_URL or the config's `provider: base_url:` was costed as a
hosted API: no hosting, a TCO a tenth of the flag's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from openai_server import FIXTURES, FakeOpenAI, cli, openai_env, run_dirs_args  # noqa: F401

INTENTS = FIXTURES / "tiny-intents"


def _summary(reports: Path) -> dict:
    (run_dir,) = [p for p in reports.iterdir() if p.is_dir() and not p.is_symlink()]
    return json.loads((run_dir / "summary.json").read_text())


@pytest.mark.parametrize("given_by", ["flag", "env", "config"])
def test_your_own_server_is_charged_hosting_however_it_was_named(given_by, tmp_path,
                                                                 monkeypatch):
    cfg = tmp_path / "exp.yaml"
    with FakeOpenAI() as server:
        flags = ["--variants", "prompt-only", "--provider", "openai", "--model", "gpt-4o-mini"]
        if given_by == "flag":
            flags += ["--base-url", server.base_url]
        elif given_by == "env":
            monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        else:
            cfg.write_text(f"provider:\n  base_url: {server.base_url}\n")
            flags += ["--config", cfg]
        cli("run", INTENTS, *flags, *run_dirs_args(tmp_path))
    summary = _summary(tmp_path / "reports")
    cost = summary["variants"]["prompt-only"]["cost"]
    hosting = summary["economics"]["self_hosted_usd_per_month"]
    assert cost["fixed_monthly_usd"] >= hosting > 0, cost
    run = json.loads(next((tmp_path / "reports").glob("*/run.json")).read_text())
    assert run["servers"]["prompt-only"] == server.base_url
