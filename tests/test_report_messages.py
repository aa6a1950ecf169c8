"""The explorer's "messages sent": recorded at run time (messages.jsonl), shown exactly or not
at all — for built-in rungs, config-declared variants and embedding retrievers alike."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from openai_server import FIXTURES, FakeOpenAI, cli, openai_env, run_dirs_args

from evalkit.data.testset import load_testset
from evalkit.pipeline.experiment import RunConfig, run_experiment
from evalkit.report import messages
from evalkit.run.journal import Journal, latest
from evalkit.run.runfolder import read_items
from evalkit.run.sent import SentLog, read_sent
from evalkit.strategies.variants import VariantContext, default_variant

assert openai_env  # the autouse fixture: the test key in the environment

ROLE = {"s": "system", "u": "user", "a": "assistant"}


def _local_run(tmp_path: Path) -> Path:
    cfg = RunConfig(testset=str(FIXTURES / "tiny-qa"), reports_dir=str(tmp_path / "r"),
                    cache_dir=str(tmp_path / "c"), finetune_dir=str(tmp_path / "ft"),
                    variants=["prompt-only", "rag"])
    return run_experiment(cfg, progress=False).run_dir


def _shown(run_dir: Path, ladder: list[str]) -> tuple[messages.Messages, list[dict]]:
    run = json.loads((run_dir / "run.json").read_text())
    items = read_items(run_dir / "items.jsonl")
    preds = latest(Journal(run_dir / "predictions.jsonl").read())
    return messages.recorded(run_dir, run, ladder, items, preds), items


def _as_chat(got: messages.Messages, cell) -> list[dict[str, str]]:
    return [{"role": ROLE[r], "content": got.texts[i]} for r, i in cell]


def test_recorded_messages_are_the_requests_the_run_built(tmp_path):
    run_dir = _local_run(tmp_path)
    got, items = _shown(run_dir, ["prompt-only", "rag"])
    assert got.note == "" and len(got.by) == len(items)
    testset = load_testset(FIXTURES / "tiny-qa")
    ctx = VariantContext(testset)
    by_id = {it.id: it for it in testset.test}
    for row, cells in zip(items, got.by, strict=True):
        for name, cell in zip(["prompt-only", "rag"], cells, strict=True):
            want = default_variant(name, testset).build(by_id[row["id"]], ctx).messages()
            assert _as_chat(got, cell) == want
    # the local provider reads the Request's fields: the page says so instead of "sent"
    assert got.sent == [False, False]
    assert json.loads((run_dir / "run.json").read_text())["messages"]["sent"] == {
        "prompt-only": False, "rag": False}
    # the system prompt is stored once, in the page as in messages.jsonl
    system = got.texts[got.by[0][0][0][1]]
    assert got.texts.count(system) == 1
    lines = (run_dir / "messages.jsonl").read_text().splitlines()
    assert sum(json.loads(x).get("x") == system for x in lines) == 1


def test_declared_variants_and_embeddings_show_exactly_what_the_server_received(tmp_path):
    """A config-declared rag rung with its own instruction file and an embedding retriever:
    what the page shows for each (variant, item) is the message list the loopback server got,
    even after the instruction file is edited (a rebuild would now render something else)."""
    (tmp_path / "prompts").mkdir()
    instructions = tmp_path / "prompts" / "house.txt"
    instructions.write_text("Answer from the passages only, in one short sentence.\n")
    with FakeOpenAI() as server:
        cfg = tmp_path / "exp.yaml"
        cfg.write_text(f"""\
provider: {{embedding_model: text-embedding-3-small}}
variants:
  - name: house-rag
    base: rag
    provider: openai
    base_url: {server.base_url}
    model: gpt-4o-mini
    instructions: prompts/house.txt
    rag: {{k: 2, retriever: embeddings}}
""")
        cli("run", FIXTURES / "tiny-qa", "--provider", "openai", "--base-url",
            server.base_url, "--config", cfg, "--variants", "prompt-only,house-rag",
            *run_dirs_args(tmp_path))
        # the server keeps sha256([model, messages]) of every chat it answered
        received = sorted(c.content_key for c in server.chat_calls(status=200))
    instructions.write_text("Something else entirely.\n")
    run_dir = (tmp_path / "reports" / "latest-tiny-qa").resolve()
    ladder = ["prompt-only", "house-rag"]
    got, items = _shown(run_dir, ladder)
    model = {(p.variant, p.item_id): p.model
             for p in latest(Journal(run_dir / "predictions.jsonl").read())}
    shown = sorted(
        hashlib.sha256(json.dumps([model[(v, row["id"])], _as_chat(got, cell)],
                                  sort_keys=True).encode()).hexdigest()
        for row, cells in zip(items, got.by, strict=True)
        for v, cell in zip(ladder, cells, strict=True) if cell)
    assert len(shown) == 2 * len(items) == len(received)
    assert shown == received
    assert got.sent == [True, True]
    house = [_as_chat(got, cells[1]) for cells in got.by]
    assert all(m[0]["content"].startswith("Answer from the passages only") for m in house)


def test_a_damaged_record_is_not_shown_and_an_old_run_shows_none(tmp_path):
    run_dir = _local_run(tmp_path)
    path = run_dir / "messages.jsonl"
    lines = path.read_text().splitlines()
    # change the text of the first item's own question (a user message no other item shares)
    first = read_items(run_dir / "items.jsonl")[0]["input"]
    k = next(i for i, x in enumerate(lines) if json.loads(x).get("x") == first)
    record = json.loads(lines[k])
    lines[k] = json.dumps({**record, "x": first + " (edited)"})
    path.write_text("\n".join(lines) + "\n")
    got, _ = _shown(run_dir, ["prompt-only", "rag"])
    assert got.by[0][0] == 0, "a text that fails its hash is never shown"
    assert all(cells[0] != 0 for cells in got.by[1:])
    assert "damaged" in got.note
    path.unlink()
    got, _ = _shown(run_dir, ["prompt-only", "rag"])
    assert got.by == [] and "no messages.jsonl" in got.note


def test_the_log_survives_a_torn_line_and_writes_each_text_once(tmp_path):
    path = tmp_path / "messages.jsonl"
    log = SentLog(path)
    a = log.record([{"role": "system", "content": "S"}, {"role": "user", "content": "one"}])
    again = log.record([{"role": "system", "content": "S"}, {"role": "user", "content": "one"}])
    log.close()
    assert a == again and len(path.read_text().splitlines()) == 3  # 2 texts + 1 prompt
    with path.open("a") as fh:
        fh.write('{"t":"torn')  # killed mid-write
    log = SentLog(path)
    b = log.record([{"role": "system", "content": "S"}, {"role": "user", "content": "two"}])
    log.close()
    texts, prompts = read_sent(path)
    assert [texts[t] for _, t in prompts[a]] == ["S", "one"]
    assert [texts[t] for _, t in prompts[b]] == ["S", "two"]
    assert all(line.endswith("}") for line in path.read_text().splitlines())
