"""The runner's hot path, written out by hand for speed (issue 16), held to what it replaced.

Each fast path here assembles by hand what a general encoder wrote before: the messages'
JSON (the cache key and the posted body), the journal line, the cache row. Each is checked
byte for byte against the general way on generated values, so the speed-up cannot change a
cache key, a journal line or a row. The turn-end flush of the journal and the ledger is
checked for what a kill must never see: a ledger close before its journal line, a journal line
before its messages.
"""

from __future__ import annotations

import asyncio
import json
import math
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evalkit import secrets
from evalkit.data.testset import Item
from evalkit.providers.base import Completion, Provider, Usage
from evalkit.providers.openai import input_token_bound
from evalkit.providers.sqlite_store import PARAMS_PER_INSERT, SqliteStore
from evalkit.run.cache import _ROW_ENCODER, ResponseCache, cache_row
from evalkit.run.journal import _ENCODER, Journal, Prediction, as_record, journal_line
from evalkit.run.ledger import CallLedger
from evalkit.run.runner import Job, run_jobs
from evalkit.strategies import request as request_module
from evalkit.strategies.request import Request, _messages_json

# any text, lone surrogates included (json.loads makes them from "\ud83d"; the encoders
# pass them through), control characters, quotes, U+2028
texts = st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x10FFFF), max_size=40)
roles = st.sampled_from(["system", "user", "assistant", "tool", "ü \"role\""])
messages = st.lists(st.fixed_dictionaries({"role": roles, "content": texts}), max_size=5)
floats = st.floats(allow_nan=True, allow_infinity=True)


def _key_json(value) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)


@settings(max_examples=300, deadline=None)
@given(messages)
def test_messages_json_is_the_sorted_key_json_of_the_messages(msgs):
    assert _messages_json(msgs) == _key_json(msgs)
    assert _messages_json(msgs) == _key_json(msgs)  # again: the repeated messages from memo


def test_messages_json_takes_repeated_messages_from_its_memo_and_others_the_general_way():
    request_module._MESSAGE_JSON.clear()
    system = {"role": "system", "content": "Classify.\n" * 50}
    first = _messages_json([system, {"role": "user", "content": "a"}])
    assert ("system", system["content"]) in request_module._MESSAGE_JSON
    assert ("user", "a") not in request_module._MESSAGE_JSON  # the item's own: not kept
    assert first == _key_json([system, {"role": "user", "content": "a"}])
    odd = [system, {"role": "user", "content": {"nested": 1}}, {"role": "user", "content": "x",
                                                                "name": "n"}]
    assert _messages_json(odd) == _key_json(odd)


def test_messages_json_memo_is_bounded(monkeypatch):
    monkeypatch.setattr(request_module, "MESSAGE_MEMO", 3)
    request_module._MESSAGE_JSON.clear()
    for i in range(10):
        msgs = [{"role": "system", "content": f"s{i}"}, {"role": "user", "content": "u"}]
        assert _messages_json(msgs) == _key_json(msgs)
        assert len(request_module._MESSAGE_JSON) <= 3


def test_a_request_serialises_its_messages_as_the_cache_key_always_did():
    request = Request("classification", "Klassifiziere. 日本", 'a "q"\u2028\ud83d',
                      labels=(("billing", "Geld"),))
    assert request.messages_json() == _key_json(request.messages())


predictions = st.builds(
    Prediction, variant=texts, item_id=texts, output=st.none() | texts,
    model=texts | st.just("sk-abcdefghijkl"), input_tokens=st.integers(0, 10**9),
    output_tokens=st.integers(0, 10**6), cached_input_tokens=st.integers(0, 10**6),
    latency_s=floats, queue_s=st.none() | floats, cost_usd=floats | st.integers(0, 3),
    cached=st.booleans(), error_class=st.none() | texts, error=st.none() | texts,
    retrieved=st.lists(texts, max_size=3),
    passages=st.lists(st.tuples(texts, st.integers(0, 9)).map(list), max_size=2),
    epoch=st.integers(0, 3), prompt=st.just("") | texts)


@settings(max_examples=300, deadline=None)
@given(predictions)
def test_the_journal_line_is_the_encoders_line(prediction):
    assert journal_line(prediction) == _ENCODER.encode(as_record(prediction))


def test_the_journal_line_scrubs_the_key_of_the_moment(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "first-key-123456")
    p = Prediction(variant="v", item_id="i", output="saw first-key-123456", error="x")
    assert "first-key" not in journal_line(p)
    monkeypatch.setenv("OPENAI_API_KEY", "second-key-654321")  # changed since: read again
    p = Prediction(variant="v", item_id="i", output="saw second-key-654321 and first-key-123456")
    line = journal_line(p)
    assert "second-key" not in line and "first-key-123456" in line
    monkeypatch.delenv("OPENAI_API_KEY")
    assert secrets.key_values() == () or "second-key-654321" not in secrets.key_values()


completions = st.builds(
    Completion, text=texts, usage=st.builds(Usage, st.integers(0, 10**9), st.integers(0, 10**6),
                                           st.integers(0, 10**6)),
    latency_s=floats | st.integers(0, 5), cost_usd=floats, model=texts, cached=st.booleans())


@settings(max_examples=300, deadline=None)
@given(completions)
def test_the_cache_row_is_the_encoders_row(completion):
    data = completion.to_dict()
    data["cached"] = False
    assert cache_row(completion) == _ROW_ENCODER.encode(data)


def test_input_token_bound_counts_utf8_bytes_with_or_without_ascii_text():
    for text in ("plain ascii", "日本語 emoji 🎉", ""):
        msgs = [{"role": "user", "content": text}]
        plain = input_token_bound([{"role": "user", "content": ""}])
        assert input_token_bound(msgs) == plain + len(text.encode("utf-8"))


def test_rows_are_inserted_many_to_a_statement_not_one_each(tmp_path):
    """One statement per row made a writer thread hand the GIL back and forth per row."""
    store = SqliteStore(tmp_path / "c.sqlite", schema="CREATE TABLE IF NOT EXISTS t "
                        "(key TEXT PRIMARY KEY, v TEXT NOT NULL)")
    statements = []
    store._db.set_trace_callback(statements.append)
    per = PARAMS_PER_INSERT // 2  # rows of two values each
    rows = [(f"k{i}", f"v{i}") for i in range(2 * per + 5)]
    store.insert_many("t", rows)
    assert len(statements) == 2 + math.ceil(len(rows) / per)  # BEGIN, 3 INSERTs, COMMIT
    store.insert_many("t", [("k0", "new")])  # or replace
    assert store.fetchone("SELECT v FROM t WHERE key = ?", ("k0",)) == ("new",)
    assert store.fetchone("SELECT count(*) FROM t", ()) == (len(rows),)


def test_the_cache_round_trips_a_thousand_rows_written_in_one_flush(tmp_path):
    cache = ResponseCache(tmp_path / "c.sqlite", flush_s=60)
    for i in range(1000):
        cache.put(f"k{i}", Completion(text=f"t{i} ü", usage=Usage(i, 1, 0), latency_s=0.5,
                                      cost_usd=1e-6 * i, model="m"))
    cache.close()
    cache = ResponseCache(tmp_path / "c.sqlite")
    hit = cache.get("k999")
    assert hit is not None and hit.text == "t999 ü" and hit.usage.input_tokens == 999
    assert hit.cached and hit.cost_usd == pytest.approx(999e-6)
    cache.close()


def test_a_deferred_journal_line_reaches_the_file_at_flush_after_its_messages(tmp_path):
    journal = Journal(tmp_path / "predictions.jsonl")
    sent_flush = journal.sent.flush
    order = []

    def flush_sent():
        order.append(("messages", (tmp_path / "predictions.jsonl").is_file()
                      and (tmp_path / "predictions.jsonl").read_text()))
        sent_flush()

    journal.sent.flush = flush_sent
    msgs = [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]
    journal.append(Prediction(variant="v", item_id="a", output="x"), messages=msgs, defer=True)
    journal.append(Prediction(variant="v", item_id="b", output="y"), messages=msgs, defer=True)
    assert not (tmp_path / "predictions.jsonl").is_file()  # nothing written before the flush
    journal.flush()
    assert order == [("messages", False)]  # messages flushed while the journal was unwritten
    lines = (tmp_path / "predictions.jsonl").read_text().splitlines()
    assert [json.loads(line)["item_id"] for line in lines] == ["a", "b"]
    journal.append(Prediction(variant="v", item_id="c", output="z"))  # not deferred: now
    assert len((tmp_path / "predictions.jsonl").read_text().splitlines()) == 3
    journal.append(Prediction(variant="v", item_id="d", output="w"), defer=True)
    journal.close()  # close flushes what is left
    assert len((tmp_path / "predictions.jsonl").read_text().splitlines()) == 4


def test_a_deferred_ledger_close_is_not_carried_out_by_the_next_open(tmp_path):
    ledger = CallLedger(tmp_path / "calls.jsonl", 1)
    n = ledger.open_call("k1", 0.5)
    ledger.close_call(n, 0.1, defer=True)
    ledger.open_call("k2", 0.5)  # flushed at once: must not take the close with it
    lines = [json.loads(x) for x in (tmp_path / "calls.jsonl").read_text().splitlines()]
    assert [("cost_usd" in x, x["n"]) for x in lines] == [(False, 1), (False, 2)]
    ledger.flush()
    lines = [json.loads(x) for x in (tmp_path / "calls.jsonl").read_text().splitlines()]
    assert lines[-1] == {"s": 1, "n": 1, "cost_usd": 0.1}
    ledger.close_call(2, 0.2, defer=True)
    ledger.close()
    assert len((tmp_path / "calls.jsonl").read_text().splitlines()) == 4


class _Answers(Provider):
    name = "answers"

    async def complete(self, request: Request) -> Completion:
        await asyncio.sleep(0)
        return Completion(text="ok", usage=Usage(3, 1), cost_usd=0.001, latency_s=0.001)

    def estimate_cost(self, request: Request) -> float:
        return 0.01


def _jobs(n: int) -> list[Job]:
    return [Job("v", Item(id=f"i{i}", input=f"q{i}", expected="ok"),
                lambda item: Request("qa", "Answer.", item.input)) for i in range(n)]


def _lines(path) -> list[str]:
    return path.read_text().splitlines() if path.is_file() else []


class _Watching(_Answers):
    """Checks, as each call is sent, that the ledger already holds it and that every answer
    returned before it is journaled."""

    def __init__(self, ledger_path, journal_path):
        self.ledger_path, self.journal_path = ledger_path, journal_path
        self.sent = self.returned = 0

    async def complete(self, request: Request) -> Completion:
        self.sent += 1
        opened = [x for x in _lines(self.ledger_path) if "worst_usd" in x]
        assert len(opened) >= self.sent, "a call was sent before its ledger line was written"
        assert len(_lines(self.journal_path)) >= self.returned, \
            "a call was sent while an answer that came back before it was not journaled"
        answer = await super().complete(request)
        self.returned += 1
        return answer


def test_a_call_goes_out_written_down_and_after_every_answer_before_it(tmp_path):
    journal_path, ledger_path = tmp_path / "predictions.jsonl", tmp_path / "c.jsonl"
    journal, ledger = Journal(journal_path), CallLedger(ledger_path, 1)
    ledger_flush = ledger.flush

    def lf():
        closes = sum("cost_usd" in x for x in ledger._deferred)
        closed = sum("cost_usd" in x for x in _lines(ledger_path))
        assert closed + closes <= len(_lines(journal_path))  # no close before its answer
        ledger_flush()

    ledger.flush = lf
    provider = _Watching(ledger_path, journal_path)
    stats = asyncio.run(run_jobs(_jobs(40), total=40, provider=provider, cache=None,
                                 journal=journal, ledger=ledger, concurrency=8,
                                 progress=False))
    assert stats.calls == provider.sent == provider.returned == 40
    assert len(_lines(journal_path)) == 40
    assert sum("cost_usd" in x for x in _lines(ledger_path)) == 40


def test_without_calls_to_send_the_journal_is_written_once_per_turn_not_per_line(tmp_path):
    journal = Journal(tmp_path / "predictions.jsonl")
    writes = []
    real = journal.flush

    def counting():
        writes.append(len(journal._lines))
        real()

    journal.flush = counting
    asyncio.run(run_jobs(_jobs(40), total=40, provider=_Answers(), cache=None,
                         journal=journal, concurrency=8, progress=False))
    assert sum(writes) == 40 and len([n for n in writes if n]) <= 10  # 8 lines a turn here


def test_a_journal_flush_that_fails_stops_the_run_with_its_error(tmp_path):
    journal = Journal(tmp_path / "predictions.jsonl")
    flushes = []
    real = journal.flush

    def failing():
        flushes.append(1)
        if len(flushes) == 2:
            raise OSError(28, "No space left on device")
        real()

    journal.flush = failing
    with pytest.raises(OSError, match="No space left"):
        asyncio.run(run_jobs(_jobs(200), total=200, provider=_Answers(), cache=None,
                             journal=journal, concurrency=4, progress=False))
    written = len((tmp_path / "predictions.jsonl").read_text().splitlines())
    assert 0 < written < 200  # the run stopped soon after, and kept what it had written


def test_one_labels_tuple_serves_every_request_of_a_task(intents_dir):
    from evalkit.data.testset import load_testset
    from evalkit.strategies.variants import VariantContext, default_variant

    ts = load_testset(intents_dir)
    ctx = VariantContext(ts)
    variant = default_variant("prompt-only", ts)
    a, b = (variant.build(item, ctx) for item in ts.test[:2])
    assert a.labels is b.labels and a.labels == tuple(ts.task.labels.items())
    assert a.fields is b.fields



def test_a_lone_surrogate_in_an_error_is_journaled_and_reads_back(tmp_path):
    """A build error (or answer) holding half a surrogate pair cannot be UTF-8: it is
    written as its JSON escape instead of failing the run's writes."""
    def jobs():
        yield Job("v", Item(id="bad", input="x", expected="ok"),
                  lambda item: (_ for _ in ()).throw(ValueError("x\ud800")))
        yield from _jobs(19)

    journal = Journal(tmp_path / "predictions.jsonl")
    stats = asyncio.run(asyncio.wait_for(run_jobs(
        jobs(), total=20, provider=_Answers(), cache=None, journal=journal,
        ledger=CallLedger(tmp_path / "calls.jsonl", 1), concurrency=4, progress=False,
        max_cost_usd=10.0), timeout=20))
    assert stats.calls == 19 and stats.errors == 1
    preds = Journal(tmp_path / "predictions.jsonl").read()
    assert len(preds) == 20
    assert next(p for p in preds if p.item_id == "bad").error == "x\ud800"


def test_a_journal_that_cannot_be_written_stops_a_capped_run_and_closes_no_lost_call(
        tmp_path, monkeypatch):
    from evalkit.run import appender

    journal_path = tmp_path / "predictions.jsonl"
    real_write, writes = appender.Appender.write, []

    def write(self, text):
        if self.path == journal_path:
            writes.append(text)
            if len(writes) >= 3:
                raise OSError(28, "No space left on device")
        real_write(self, text)

    monkeypatch.setattr(appender.Appender, "write", write)
    with pytest.raises(OSError, match="No space left"):
        asyncio.run(asyncio.wait_for(run_jobs(
            _jobs(200), total=200, provider=_Answers(), cache=None,
            journal=Journal(journal_path), ledger=CallLedger(tmp_path / "calls.jsonl", 1),
            concurrency=4, progress=False, max_cost_usd=100.0), timeout=20))
    journaled = len(_lines(journal_path))
    ledger = [json.loads(x) for x in _lines(tmp_path / "calls.jsonl")]
    closed = sum("cost_usd" in x for x in ledger)
    opened = sum("worst_usd" in x for x in ledger)
    assert 0 < journaled < 200 and opened < 200  # stopped soon, not after every job
    assert closed <= journaled  # no call closed whose answer is not in the journal


def test_a_prompt_that_fails_to_record_leaves_none_of_its_texts_remembered(tmp_path):
    from evalkit.run.sent import SentLog

    log = SentLog(tmp_path / "messages.jsonl")
    with pytest.raises(TypeError):
        log.record([{"role": "system", "content": "new text"},
                    {"role": "user", "content": {"not": "text"}}])
    pid = log.record([{"role": "system", "content": "new text"},
                      {"role": "user", "content": "q"}])
    log.flush()
    from evalkit.run.sent import read_sent

    texts, prompts = read_sent(tmp_path / "messages.jsonl")
    assert [texts[t] for _, t in prompts[pid]] == ["new text", "q"]  # written, not skipped


def test_a_key_inside_another_key_leaves_nothing_of_either(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "abcd1234")
    monkeypatch.setenv("EVALKIT_TEST_LONG_KEY", "abcd1234WXYZ9876")
    secrets.register_key_env("EVALKIT_TEST_LONG_KEY")
    assert secrets.key_values()[:2] == ("abcd1234WXYZ9876", "abcd1234")  # longest first
    text = secrets.scrub("a abcd1234WXYZ9876 b abcd1234 c")
    assert "abcd" not in text and "WXYZ" not in text and "9876" not in text


def test_rendered_is_the_one_rendering_and_messages_a_copy_of_it():
    request = Request("qa", "Answer.", "when?")
    assert request.rendered() is request.rendered()
    copy = request.messages()
    assert copy == request.rendered() and copy is not request.rendered()
    copy[0]["content"] = "changed"  # a caller's change stays its own
    assert request.rendered()[0]["content"] != "changed"


def test_a_row_being_committed_is_still_a_hit(tmp_path):
    cache = ResponseCache(tmp_path / "c.sqlite", flush_s=60)
    cache.put("k", Completion(text="t", usage=Usage(1, 1, 0), latency_s=0.1, cost_usd=0.1))
    seen = []
    real = cache._store.insert_many

    def insert(table, rows):  # what another task asks while the writer commits
        seen.append(cache.get("k"))
        cache.prefetch(["k"])
        seen.append(cache._ahead.get("k"))
        real(table, rows)

    cache._store.insert_many = insert
    cache.flush()
    assert seen[0] is not None and seen[0].text == "t" and seen[1] is not None
    assert cache.get("k").text == "t"  # and from the database once committed
    cache.close()


def test_the_messages_of_a_prepared_batch_go_out_in_one_write_before_its_lines(tmp_path):
    """The runner records each batch's messages as it prepares it (PREPARE_BATCH jobs): one
    write to messages.jsonl per batch, not one per journal line, and every journal line still
    names a prompt that messages.jsonl held before the line was written."""
    from evalkit.run import appender
    from evalkit.run.runner import PREPARE_BATCH
    from evalkit.run.sent import read_sent

    journal_path = tmp_path / "predictions.jsonl"
    writes: list[str] = []  # the file of each write, in order
    real = appender.Appender.write

    def write(self, text):
        if self.path.name == "predictions.jsonl":
            held = read_sent(tmp_path / "messages.jsonl")[1]
            for line in text.splitlines():
                assert json.loads(line)["prompt"] in held, "a line before its prompt"
        real(self, text)
        writes.append(self.path.name)

    n = 2 * PREPARE_BATCH + 3  # three batches
    try:
        appender.Appender.write = write
        stats = asyncio.run(run_jobs(_jobs(n), total=n, provider=_Answers(), cache=None,
                                     journal=Journal(journal_path), concurrency=8,
                                     progress=False))
    finally:
        appender.Appender.write = real
    assert stats.calls == n and len(_lines(journal_path)) == n
    assert writes.count("messages.jsonl") == 3
    texts, prompts = read_sent(tmp_path / "messages.jsonl")
    assert len(prompts) == n and len(texts) == n + 1  # each input, and the one system text


def test_an_answer_the_cache_cannot_encode_is_left_out_and_the_rest_stored(tmp_path, capsys):
    """Rows are encoded by the cache's writer: an answer that does not encode (a provider's
    odd field type) is a miss later, said once, and neither the writer nor the other rows
    are lost with it."""
    cache = ResponseCache(tmp_path / "c.sqlite", flush_s=60)
    good = Completion(text="t", usage=Usage(1, 1, 0), latency_s=0.1, cost_usd=0.1)
    cache.put("odd", Completion(text="t", usage=Usage(1, 1, 0), latency_s=0.1,
                                cost_usd=0.1, model=object()))  # type: ignore[arg-type]
    cache.put("good", good)
    assert cache.get("odd") is None and cache.get("good").text == "t"  # before the commit
    cache.flush()
    assert cache.get("odd") is None and cache.get("good") == replace(good, cached=True)
    assert "could not be stored in the cache" in capsys.readouterr().err
    cache.put("later", good)  # the writer still writes
    cache.close()
    reopened = ResponseCache(tmp_path / "c.sqlite")
    assert reopened.get("later") is not None and reopened.get("odd") is None
    reopened.close()
