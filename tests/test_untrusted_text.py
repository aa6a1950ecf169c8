"""Model output that is not text: a lone UTF-16 surrogate (half an emoji, JSON-escaped as
`\\ud83d`) comes out of json.loads as a str UTF-8 cannot encode. It must not stop the run
mid-way (the cache key, the journal, messages.jsonl and the report all encode to UTF-8)."""

from __future__ import annotations

import json

from click.testing import CliRunner
from openai_server import FIXTURES, FakeOpenAI, openai_env  # noqa: F401  (autouse)

from evalkit.cli import main
from evalkit.providers.openai import well_formed

LONE = "\ud83d"  # a high surrogate with no low one after it


class HalfEmoji(FakeOpenAI):
    """Answers as the fake does, then a cut-off emoji: json.dumps escapes it as \\ud83d."""

    def answer(self, model, messages):
        return super().answer(model, messages) + " " + LONE


def test_a_lone_surrogate_is_made_text_once():
    assert well_formed("billing " + LONE) == "billing \ufffd"
    assert well_formed("billing \U0001f600") == "billing \U0001f600"  # a whole emoji stays


def test_a_run_whose_answers_hold_lone_surrogates_completes(tmp_path):
    with HalfEmoji() as server:
        result = CliRunner().invoke(main, [
            "run", str(FIXTURES / "tiny-intents"), "--variants", "prompt-only,few-shot",
            "--provider", "openai", "--base-url", server.base_url, "--no-progress",
            "--reports-dir", str(tmp_path / "reports"), "--cache-dir", str(tmp_path / "c"),
            "--finetune-dir", str(tmp_path / "ft")])
        assert result.exit_code == 0, result.output
        assert server.chat_calls()
    (run,) = [p for p in (tmp_path / "reports").iterdir() if not p.name.startswith("latest")]
    lines = (run / "predictions.jsonl").read_text(encoding="utf-8").splitlines()
    outputs = [json.loads(line)["output"] for line in lines]
    assert outputs and all(o.endswith(" \ufffd") for o in outputs)
    assert not any(json.loads(line).get("error") for line in lines)
    assert "\ufffd" in (run / "index.html").read_text(encoding="utf-8")


def _half_emoji_set(tmp_path):
    folder = tmp_path / "half-emoji"
    folder.mkdir()
    for name in ("task.yaml", "train.jsonl"):
        (folder / name).write_text((FIXTURES / "tiny-intents" / name).read_text())
    lines = (FIXTURES / "tiny-intents" / "test.jsonl").read_text().splitlines()
    row = json.loads(lines[2])
    row["input"] += " " + LONE
    lines[2] = json.dumps(row)  # ASCII JSON: written as the escape \ud83d
    (folder / "test.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def test_a_test_set_holding_a_lone_surrogate_is_refused_naming_file_line_and_field(tmp_path):
    folder = _half_emoji_set(tmp_path)
    result = CliRunner().invoke(main, ["run", str(folder), "--variants", "prompt-only",
                                       "--no-progress", "--reports-dir", str(tmp_path / "r"),
                                       "--cache-dir", str(tmp_path / "c")])
    assert result.exit_code == 2, result.output
    assert (f"{folder / 'test.jsonl'}:3: field 'input': holds a lone UTF-16 surrogate "
            "(\\ud83d") in result.output
    assert "Traceback" not in result.output
