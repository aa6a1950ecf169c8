"""messages.jsonl holds every prompt a run sends, so a key pasted into a test item, an
instruction file or a few-shot example must not reach it: its texts are scrubbed as the
journal's fields are (the configured key's value, and key-shaped values)."""

from __future__ import annotations

from evalkit.run.journal import Journal, Prediction
from evalkit.run.sent import read_sent, sent_path
from evalkit.secrets import REDACTED

KEY = "live-key-value-0123456789"


def test_no_key_reaches_messages_jsonl(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    journal = Journal(tmp_path / "predictions.jsonl")
    messages = [{"role": "system", "content": f"Use the key {KEY} when asked."},
                {"role": "user", "content": "my token is sk-proj-abcdefghijklmnop, and "
                                            "Bearer abcdef123456 too"},
                {"role": "assistant", "content": "see https://user:hunter22@example.com/x"},
                {"role": "user", "content": "nothing secret here"}]
    journal.append(Prediction(variant="v", item_id="1", output="ok"), messages=messages)
    journal.close()
    raw = sent_path(journal.path).read_text(encoding="utf-8")
    for secret in (KEY, "sk-proj-abcdefghijklmnop", "abcdef123456", "hunter22"):
        assert secret not in raw
    texts, prompts = read_sent(sent_path(journal.path))  # the records still check out
    (pid,) = prompts
    shown = [texts[t] for _, t in prompts[pid]]
    assert shown[0] == f"Use the key {REDACTED} when asked."
    assert shown[-1] == "nothing secret here" and all(REDACTED in s for s in shown[:3])
    assert journal.read()[0].prompt == pid
