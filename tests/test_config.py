"""The experiment config: sections, and credentials refused before they can reach disk."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from evalkit.cli import main
from evalkit.config import ConfigError, load_config

FIXTURES = Path(__file__).parent / "fixtures"


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "exp.yaml"
    path.write_text(text)
    return path


def test_sections_load_and_unknown_sections_are_named(tmp_path):
    cfg = load_config(_write(tmp_path, "economics:\n  queries_per_month: 500\n"))
    assert cfg.section("economics") == {"queries_per_month": 500}
    assert cfg.section("gate") == {}
    with pytest.raises(ConfigError,
                       match=r"exp\.yaml:2: field 'economcs'.*did you mean 'economics'"):
        load_config(_write(tmp_path, "# the line is found from the field\neconomcs: {}\n"))


@pytest.mark.parametrize("text, field", [
    ("provider:\n  api_key: abc123\n", "provider.api_key"),
    ("judge:\n  model: m\n  API_KEY: abc\n", "judge.API_KEY"),
    ("pricing:\n  models:\n    m:\n      token: x\n", "pricing.models.m.token"),
    ("economics:\n  notes: sk-proj-abcdefghijklmnop\n", "economics.notes"),
    ("provider:\n  headers: [{authorization: Bearer abc}]\n", "provider.headers[0].authorization"),
])
def test_credentials_anywhere_are_refused_with_their_field(tmp_path, text, field):
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, text))
    assert f"field '{field}'" in str(info.value) and "exp.yaml" in str(info.value)


def test_token_counts_and_prices_are_not_mistaken_for_credentials(tmp_path):
    cfg = load_config(_write(tmp_path, "pricing:\n  models:\n    m:\n      tokens_per_second: 50\n"
                                       "      max_tokens: 10\n"))
    assert cfg.section("pricing")["models"]["m"]["tokens_per_second"] == 50


def test_a_key_in_the_config_never_reaches_the_run_folder(tmp_path):
    """The run stops before creating anything: no run.json, no report with the key in it."""
    secret = "sk-test-SECRET-abcdefghijkl"
    cfg = _write(tmp_path, f"provider:\n  api_key: {secret}\n")
    result = CliRunner().invoke(main, [
        "run", str(FIXTURES / "tiny-intents"), "--config", str(cfg), "--no-progress",
        "--reports-dir", str(tmp_path / "reports"), "--cache-dir", str(tmp_path / "cache"),
        "--finetune-dir", str(tmp_path / "ft")])
    assert result.exit_code == 2 and "provider.api_key" in result.output
    written = [p for p in tmp_path.rglob("*") if p.is_file() and p.name != "exp.yaml"]
    assert not any(secret in p.read_text(errors="ignore") for p in written)


@pytest.mark.parametrize("field, line", [
    ("economics.queries_per_month", 3), ("economics.variants.rag.hours", 6),
    ("compare[1]", 9), ("economics.nope", 2), ("gate", None)])
def test_a_config_error_finds_the_line_of_its_field(tmp_path, field, line):
    path = _write(tmp_path, "# comment\neconomics:\n  queries_per_month: 5\n  variants:\n"
                            "    rag:\n      hours: x\ncompare:\n  - [a, b]\n  - [a, c]\n")
    err = ConfigError(path, "bad", field=field)  # a missing key: its nearest parent's line
    assert err.line == line
    assert str(err) == (f"{path}:{line}: field {field!r}: bad" if line
                        else f"{path}: field {field!r}: bad")
