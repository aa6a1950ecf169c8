"""An OpenAI-compatible HTTP server on 127.0.0.1 for tests: no network, no real key.

Serves what evalkit calls — chat completions (with usage and simulated prompt caching),
embeddings, file uploads, fine-tuning jobs that move validating_files -> queued -> running ->
succeeded over a few polls, job events, models — and injects faults on demand:

- `fault_rate`: exactly that fraction of distinct chat requests (every 1/rate-th new one, in
  order of arrival) fail their first `fault_attempts` attempts with a 429 carrying
  `Retry-After` or a 500 without one, alternately;
- `permanent_400`: requests whose last user message contains one of these strings get a 400;
- `slow`: {substring: seconds} delays the answer (past the client's timeout, if you like);
- `slow_job_creates`: (n, seconds): the first n fine-tune job creations answer that late;
  `slow_attempts` limits how many attempts are slow (None: all);
- `malformed`: substrings whose answer is a 200 with a body that is not JSON;
- `html_login`: substrings whose answer is a 200 HTML proxy-login page that echoes the key;
- `retry_after`: {substring: seconds} a 429 with exactly that Retry-After on the first attempt;
- `reject_response_format`: a request carrying `response_format` gets the 400 a server without
  structured output sends ("Unrecognized request argument supplied: response_format").
- `sampling`: with `temperature` > 0 a classification request gets a label drawn at random,
  seeded by the request's `seed` and messages (the same seed repeats the draw), as a sampling
  model would; temperature 0 keeps the deterministic answer.

Batches (`/v1/batches`, `/v1/files/{id}/content`): a created batch is `in_progress` for
`batch_polls` polls, then `completed` with an output file of chat completions (and an error
file for lines `permanent_400` refuses); `batch_creations()` counts creations.

And, for the budget's tests, answers and counts a cap must survive:
- `answer_tokens`: every chat answer is this many tokens long (else the "model" below);
- `obeys`: the output-limit parameters it honours (cutting the answer, finish_reason "length"):
  both by default, `("max_tokens",)` like llama.cpp's server, `()` for one that ignores both;
- `tokenizer`: "words" (a token per word, the default) or "bytes" (a token per UTF-8 byte, the
  most any byte-level BPE can count: what chars/4 undercounts on CJK, emoji, digits);
- `report_usage`: False leaves `usage` out of the response, as some servers do.
- `reshape`: a function given each chat answer's JSON payload (a dict) and returning the one
  to send: how a real server's answers differ from OpenAI's (`content: null`, a usage with
  `completion_tokens` missing, a chatty or fenced answer, no `system_fingerprint`).
`billed_usd(prices)` is what the server's own usage says the answered calls cost.

Every request is recorded (path, model, a hash of the messages, status, time), so tests can
count calls and duplicates. The server checks the bearer key when `api_key` is set and keeps
everything in memory: nothing it receives reaches the disk.

The "model": for classification prompts it picks the label whose description shares the most
words with the message (a weak zero-shot model); with few-shot examples or passages it also
votes with them; a fine-tuned model (created by a job) answers from the uploaded training
file's nearest example. QA prompts get the best-overlapping passage sentence, else "unknown".
Extraction prompts (a `response_format`, or a system prompt listing the record's keys) get a
record of those keys: an order id (KP-123456) and an e-mail address when the message has one,
null otherwise; bare JSON when the request asked through `response_format`, else wrapped in
chatty text and a ```json fence, as small models answer.
"""

from __future__ import annotations

import email.parser
import email.policy
import hashlib
import json
import math
import random
import re
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

WORD = re.compile(r"[a-z0-9]+")


def words(text: str) -> list[str]:
    return WORD.findall(text.lower())


@dataclass
class Recorded:
    method: str
    path: str
    status: int
    model: str | None = None
    content_key: str | None = None  # sha256 of the chat messages (or embedding input)
    last_user: str | None = None
    at: float = 0.0
    body: dict[str, Any] | None = None
    retry_count: str | None = None  # the SDK's x-stainless-retry-count header
    headers: dict[str, str] | None = None  # a chat request's headers, names lower-cased
    logged: bool = False


@dataclass
class FineTuneJob:
    id: str
    model: str
    training_file: str
    suffix: str | None
    n_epochs: int
    polls: int = 0
    created_at: int = field(default_factory=lambda: int(time.time()))


class FakeOpenAI:
    """The server's state and behaviour. Start with `with FakeOpenAI(...) as server:`."""

    def __init__(self, *, api_key: str | None = None, fault_rate: float = 0.0,
                 fault_attempts: int = 1, fault_retry_after: float = 0.05,
                 permanent_400: tuple[str, ...] = (), slow: dict[str, float] | None = None,
                 slow_attempts: int | None = None, malformed: tuple[str, ...] = (),
                 retry_after: dict[str, float] | None = None, polls_per_stage: int = 1,
                 served_models: tuple[str, ...] | None = None, cached_prompts: bool = True,
                 html_login: tuple[str, ...] = (), batch_polls: int = 1,
                 reject_response_format: bool = False, answer_tokens: int | None = None,
                 obeys: tuple[str, ...] = ("max_completion_tokens", "max_tokens"),
                 tokenizer: str = "words", report_usage: bool = True,
                 sampling: bool = False, reshape=None, port: int = 0,
                 slow_job_creates: tuple[int, float] = (0, 0.0)):
        # (n, seconds): the first n fine-tune job creations make the job, then answer late
        self.slow_job_creates = list(slow_job_creates)
        self.port = port  # 0: any free port (tests); `python tests/openai_server.py --port N`
        self.api_key = api_key
        self.fault_rate = fault_rate
        self.fault_attempts = fault_attempts
        self.fault_retry_after = fault_retry_after
        self.permanent_400 = permanent_400
        self.slow = slow or {}
        self.slow_attempts = slow_attempts
        self.malformed = malformed
        self.html_login = html_login  # substrings answered 200 text/html echoing the key
        self.reject_response_format = reject_response_format
        self.retry_after = retry_after or {}
        self.answer_tokens = answer_tokens
        self.obeys = obeys
        self.tokenizer = tokenizer
        self.report_usage = report_usage
        self.usages: list[tuple[str | None, dict[str, Any]]] = []  # (model, usage) per 200
        self.polls_per_stage = polls_per_stage
        self.batch_polls = batch_polls  # polls a batch stays in_progress before completing
        self.sampling = sampling
        self.reshape = reshape  # payload -> payload: a real server's ways of answering
        self.batches: dict[str, dict[str, Any]] = {}
        self.served_models = served_models  # None: any model name is served
        self.cached_prompts = cached_prompts
        self.requests: list[Recorded] = []
        self.prompt_tokens: dict[str, int] = {}  # content key -> prompt tokens it reported
        self.files: dict[str, bytes] = {}
        self.jobs: dict[str, FineTuneJob] = {}
        self.fine_tuned: dict[str, list[tuple[str, str]]] = {}  # model -> (user, assistant)
        self._attempts: Counter[str] = Counter()
        self._seen_prefixes: set[str] = set()
        self._lock = threading.Lock()
        self._faults = 0
        self._order: dict[str, int] = {}
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> FakeOpenAI:
        state = self

        class Handler(_Handler):
            server_state = state

        self._httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        assert self._httpd is not None
        self._httpd.shutdown()
        self._httpd.server_close()

    @property
    def base_url(self) -> str:
        assert self._httpd is not None
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    # --- what tests ask ----------------------------------------------------------------------

    def chat_calls(self, status: int | None = None) -> list[Recorded]:
        with self._lock:
            return [r for r in self.requests if r.path == "/v1/chat/completions"
                    and (status is None or r.status == status)]

    def answered_twice(self) -> list[str]:
        """Content keys that got more than one 200: a call repeated after it had succeeded."""
        counts = Counter(r.content_key for r in self.chat_calls(status=200))
        return [k for k, n in counts.items() if n > 1]

    def billed_usd(self, prices) -> float:
        """What every answered call cost by the server's own usage (a PriceBook prices it)."""
        from evalkit.providers.base import Usage

        with self._lock:
            usages = list(self.usages)
        return sum(prices.price(model).cost(Usage(
            input_tokens=u["prompt_tokens"], output_tokens=u["completion_tokens"],
            cached_input_tokens=u["prompt_tokens_details"]["cached_tokens"]))
            for model, u in usages)

    def record(self, rec: Recorded) -> None:
        """Log a request once (chat requests are logged on arrival, their status set later)."""
        with self._lock:
            if not rec.logged:
                rec.logged = True
                self.requests.append(rec)

    # --- chat --------------------------------------------------------------------------------

    def chat(self, body: dict[str, Any]) -> tuple[int, dict[str, str], bytes, Recorded]:
        messages = body.get("messages") or []
        model = body.get("model")
        last_user = next((m.get("content", "") for m in reversed(messages)
                          if m.get("role") == "user"), "")
        key = hashlib.sha256(json.dumps([model, messages], sort_keys=True).encode()).hexdigest()
        rec = Recorded("POST", "/v1/chat/completions", 0, model, key, last_user, time.time(),
                       {k: v for k, v in body.items() if k != "messages"})
        self.record(rec)  # on arrival: a request the client gave up on still counts
        with self._lock:
            self._attempts[key] += 1
            attempt = self._attempts[key]
        for needle, delay in self.slow.items():
            if needle in last_user and (self.slow_attempts is None
                                        or attempt <= self.slow_attempts):
                time.sleep(delay)
        for needle, seconds in self.retry_after.items():
            if needle in last_user and attempt == 1:
                return self._error(rec, 429, "rate_limit_exceeded", "slow down",
                                   {"retry-after": str(seconds)})
        if any(n in last_user for n in self.permanent_400):
            return self._error(rec, 400, "invalid_request_error",
                               "This item is refused by the test server (permanent 400).")
        if self.reject_response_format and "response_format" in body:
            return self._error(rec, 400, "invalid_request_error",
                               "Unrecognized request argument supplied: response_format")
        if self.served_models is not None and model not in self.served_models \
                and model not in self.fine_tuned:
            return self._error(rec, 404, "model_not_found", f"The model {model!r} does not exist")
        if self._faulty(key) and attempt <= self.fault_attempts:
            with self._lock:
                self._faults += 1
                n = self._faults
            if n % 2:
                return self._error(rec, 429, "rate_limit_exceeded", "Rate limit reached",
                                   {"retry-after": str(self.fault_retry_after)})
            return self._error(rec, 500, "server_error", "The server had an error")
        if any(n in last_user for n in self.malformed):
            rec.status = 200
            self.record(rec)
            return 200, {"content-type": "application/json"}, b'{"id": "x", "choices": [', rec
        if any(n in last_user for n in self.html_login):
            rec.status = 200
            self.record(rec)
            page = f"<html>proxy login for {KEY} (Bearer {KEY}) at http://u:{KEY}@proxy</html>"
            return 200, {"content-type": "text/html"}, page.encode(), rec
        keys = _record_keys(body, messages)
        text = self.extract(keys, last_user, asked="response_format" in body) if keys \
            else self.answer(model, messages)
        if self.sampling and (body.get("temperature") or 0) > 0:
            text = self.sample(messages, text, seed=body.get("seed"), key=key)
        if self.answer_tokens is not None:
            text = " ".join(f"w{i % 10}" for i in range(self.answer_tokens))
        text, finish = self._limited(text, body)
        usage = self.usage(messages, text)
        self.prompt_tokens[key] = usage["prompt_tokens"]
        with self._lock:
            self.usages.append((model, usage))
        rec.status = 200
        payload = {
            "id": f"chatcmpl-{key[:12]}", "object": "chat.completion", "created": int(time.time()),
            "model": model, "system_fingerprint": "fp_test",
            "choices": [{"index": 0, "finish_reason": finish, "logprobs": None,
                         "message": {"role": "assistant", "content": text, "refusal": None}}],
        }
        if self.report_usage:
            payload["usage"] = usage
        if self.reshape is not None:
            payload = self.reshape(payload)
        self.record(rec)
        return 200, {"content-type": "application/json"}, json.dumps(payload).encode(), rec

    def _faulty(self, key: str) -> bool:
        """Exactly `fault_rate` of distinct requests, spread evenly in order of arrival."""
        with self._lock:
            if key not in self._order:
                self._order[key] = len(self._order)
            n = self._order[key]
        return math.floor((n + 1) * self.fault_rate) > math.floor(n * self.fault_rate)

    def _error(self, rec: Recorded, status: int, code: str, message: str,
               headers: dict[str, str] | None = None):
        rec.status = status
        self.record(rec)
        body = {"error": {"message": message, "type": code, "param": None, "code": code}}
        return status, {"content-type": "application/json", **(headers or {})}, \
            json.dumps(body).encode(), rec

    def _limited(self, text: str, body: dict[str, Any]) -> tuple[str, str]:
        """The answer cut to the output limit it honours, and the finish reason."""
        limits = [body[p] for p in self.obeys if isinstance(body.get(p), int)]
        if not limits or self.count(text) <= min(limits):
            return text, "stop"
        if self.tokenizer == "bytes":
            return text.encode()[:min(limits)].decode("utf-8", "ignore"), "length"
        return " ".join(text.split()[:min(limits)]), "length"

    def count(self, text: str) -> int:
        if self.tokenizer == "bytes":
            return len(text.encode("utf-8"))
        return len(words(text))

    def usage(self, messages: list[dict[str, str]], text: str) -> dict[str, Any]:
        prompt = sum(self.count(m.get("content", "")) + 4 for m in messages) + 3
        cached = 0
        if self.cached_prompts and messages and messages[0].get("role") == "system":
            prefix = messages[0]["content"]
            with self._lock:
                if prefix in self._seen_prefixes:
                    cached = self.count(prefix)
                self._seen_prefixes.add(prefix)
        completion = max(1, self.count(text))
        return {"prompt_tokens": prompt, "completion_tokens": completion,
                "total_tokens": prompt + completion,
                "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0}}

    def answer(self, model: str, messages: list[dict[str, str]]) -> str:
        system = messages[0]["content"] if messages and messages[0]["role"] == "system" else ""
        user = messages[-1]["content"] if messages else ""
        question = user.rsplit("Question:", 1)[-1]
        if model in self.fine_tuned:
            memory = self.fine_tuned[model]
            return max(memory, key=lambda ex: _overlap(ex[0], user))[1]
        if '"verdict"' in system:  # acting as an LLM judge
            return self.judge(user)
        labels = re.findall(r"^- ([A-Za-z0-9_\-]+): (.+)$", system, flags=re.M)
        if labels:
            scores = {label: _overlap(question, f"{label} {desc}") for label, desc in labels}
            shots = list(zip(messages[1:-1:2], messages[2:-1:2], strict=True))
            for u, a in shots:
                if a["content"] in scores:
                    scores[a["content"]] += 2 * _overlap(question, u["content"])
            for passage in re.findall(r"^\[\d+\] \(([^)]*)\) (.+)$", user, flags=re.M):
                for label, desc in labels:
                    scores[label] += 0.5 * _overlap(passage[1], desc) * _overlap(question,
                                                                                 passage[1])
            return max(scores, key=lambda k: (scores[k], k))
        sentences = [s for p in re.findall(r"^\[\d+\] \([^)]*\) (.+)$", user, flags=re.M)
                     for s in re.split(r"(?<=[.!?])\s+", p)]
        if sentences:
            best = max(sentences, key=lambda s: _overlap(question, s))
            if _overlap(question, best) > 0.2:
                return best
        return "unknown"

    def extract(self, keys: list[str], user: str, *, asked: bool) -> str:
        """A record of `keys`: the order id and e-mail the message holds, null elsewhere."""
        found = {"order": re.search(r"KP-?\d{6}", user, flags=re.I),
                 "mail": re.search(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+", user)}
        record = {}
        for k in keys:
            hit = next((m for cue, m in found.items() if cue in k), None)
            record[k] = hit.group(0) if hit else None
        text = json.dumps(record)
        return text if asked else f"Sure! Here is the record:\n```json\n{text}\n```\nAnything else?"

    def sample(self, messages: list[dict[str, str]], text: str, *, seed: Any, key: str) -> str:
        """A random label (classification) for a sampled request; other answers unchanged."""
        system = messages[0]["content"] if messages and messages[0]["role"] == "system" else ""
        labels = re.findall(r"^- ([A-Za-z0-9_\-]+): (.+)$", system, flags=re.M)
        if not labels:
            return text
        rng = random.Random(f"{seed}:{key}")
        return rng.choice([label for label, _ in labels])

    def judge(self, user: str) -> str:
        """Grades by word overlap with the best reference; `GARBLE` in the answer: no JSON."""
        candidate = user.split("Candidate answer:", 1)[-1].strip()
        if "Retrieved passages:" in user:  # groundedness: overlap with the best passage
            shown = re.findall(r"^- (.+)$", user.split("Retrieved passages:", 1)[1]
                               .split("Candidate answer:", 1)[0], flags=re.M)
            best = max((_overlap(candidate, p) for p in shown), default=0.0)
            verdict = "supported" if best >= 0.5 else "unsupported"
            return json.dumps({"verdict": verdict, "reason": f"overlap {best:.2f}"})
        refs = re.findall(r"^- (.+)$", user.split("Reference answer(s):", 1)[-1]
                          .split("Candidate answer:", 1)[0], flags=re.M)
        if "GARBLE" in candidate:
            return "Hmm, hard to say. It might be right."
        best = max((_overlap(candidate, r) for r in refs), default=0.0)
        verdict = "correct" if best >= 0.5 else "incorrect"
        return json.dumps({"verdict": verdict, "reason": f"overlap {best:.2f} with a reference"})

    # --- embeddings --------------------------------------------------------------------------

    def embeddings(self, body: dict[str, Any]) -> tuple[int, dict[str, str], bytes, Recorded]:
        inputs = body.get("input")
        inputs = [inputs] if isinstance(inputs, str) else list(inputs or [])
        key = hashlib.sha256(json.dumps(inputs).encode()).hexdigest()
        rec = Recorded("POST", "/v1/embeddings", 200, body.get("model"), key, None, time.time(),
                       {k: v for k, v in body.items() if k != "input"} | {"n": len(inputs)})
        if body.get("encoding_format") != "float":
            # many OpenAI-compatible servers reject base64; so does this one
            return self._error(rec, 400, "invalid_request_error",
                               "only encoding_format=float is supported")
        data = [{"object": "embedding", "index": i, "embedding": embed(text)}
                for i, text in enumerate(inputs)]
        tokens = sum(len(words(t)) for t in inputs)
        self.record(rec)
        payload = {"object": "list", "data": data, "model": body.get("model"),
                   "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
        return 200, {"content-type": "application/json"}, json.dumps(payload).encode(), rec

    # --- files and fine-tuning ---------------------------------------------------------------

    def upload(self, content_type: str, raw: bytes) -> dict[str, Any]:
        msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            f"Content-Type: {content_type}\r\n\r\n".encode() + raw)
        fields: dict[str, Any] = {}
        filename = "upload.jsonl"
        for part in msg.iter_parts():
            name = part.get_param("name", header="content-disposition")
            if part.get_filename():
                filename = part.get_filename()
            fields[name] = part.get_payload(decode=True)
        with self._lock:
            file_id = f"file-{len(self.files) + 1:04d}"
            self.files[file_id] = fields.get("file", b"")
        return {"id": file_id, "object": "file", "bytes": len(self.files[file_id]),
                "created_at": int(time.time()), "filename": filename,
                "purpose": (fields.get("purpose") or b"").decode(), "status": "processed"}

    def create_batch(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if body.get("input_file_id") not in self.files:
            return 400, {"error": {"message": "input_file_id not found", "type": "invalid",
                                   "param": "input_file_id", "code": None}}
        lines = self.files[body["input_file_id"]].decode().splitlines()
        with self._lock:
            batch = {"id": f"batch_{len(self.batches) + 1:04d}", "object": "batch",
                     "endpoint": body.get("endpoint"), "input_file_id": body["input_file_id"],
                     "completion_window": body.get("completion_window"),
                     "status": "validating", "output_file_id": None, "error_file_id": None,
                     "created_at": int(time.time()), "metadata": body.get("metadata"),
                     "request_counts": {"total": len(lines), "completed": 0, "failed": 0},
                     "polls": 0}
            self.batches[batch["id"]] = batch
        return 200, self._batch_json(batch)

    def batch_creations(self) -> int:
        with self._lock:
            return sum(r.path == "/v1/batches" and r.method == "POST" and r.status == 200
                       for r in self.requests)

    def poll_batch(self, batch_id: str) -> tuple[int, dict[str, Any]]:
        batch = self.batches.get(batch_id)
        if batch is None:
            return 404, {"error": {"message": "no such batch", "type": "invalid",
                                   "param": None, "code": None}}
        batch["polls"] += 1
        if batch["status"] != "completed":
            batch["status"] = "in_progress"
            if batch["polls"] > self.batch_polls:
                self._finish_batch(batch)
        return 200, self._batch_json(batch)

    def _finish_batch(self, batch: dict[str, Any]) -> None:
        out, err = [], []
        for n, line in enumerate(self.files[batch["input_file_id"]].decode().splitlines()):
            row = json.loads(line)
            messages = row["body"]["messages"]
            last_user = messages[-1]["content"] if messages else ""
            if any(x in last_user for x in self.permanent_400):
                err.append({"id": f"req_{n}", "custom_id": row["custom_id"], "response": {
                    "status_code": 400, "request_id": f"r{n}", "body": {"error": {
                        "message": "refused by the test server", "type": "invalid_request",
                        "param": None, "code": None}}}, "error": None})
                continue
            model = row["body"]["model"]
            text = self.answer(model, messages)
            body = {"id": f"chatcmpl-b{n}", "object": "chat.completion", "created": 0,
                    "model": model, "choices": [{"index": 0, "finish_reason": "stop",
                                                 "message": {"role": "assistant",
                                                             "content": text}}],
                    "usage": self.usage(messages, text)}
            out.append({"id": f"req_{n}", "custom_id": row["custom_id"],
                        "response": {"status_code": 200, "request_id": f"r{n}", "body": body},
                        "error": None})
        with self._lock:
            for kind, rows in (("output_file_id", out), ("error_file_id", err)):
                if rows:
                    file_id = f"file-{len(self.files) + 1:04d}"
                    self.files[file_id] = "".join(json.dumps(r) + "\n" for r in rows).encode()
                    batch[kind] = file_id
            batch["status"] = "completed"
            batch["request_counts"] = {"total": len(out) + len(err), "completed": len(out),
                                       "failed": len(err)}

    def _batch_json(self, batch: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in batch.items() if k != "polls"}

    def create_job(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if body.get("training_file") not in self.files:
            return 400, {"error": {"message": "training_file not found", "type": "invalid",
                                   "param": "training_file", "code": None}}
        epochs = (((body.get("method") or {}).get("supervised") or {}).get("hyperparameters")
                  or {}).get("n_epochs", 3)
        with self._lock:
            job = FineTuneJob(f"ftjob-{len(self.jobs) + 1:04d}", body["model"],
                              body["training_file"], body.get("suffix"),
                              epochs if isinstance(epochs, int) else 3)
            self.jobs[job.id] = job
            late = self.slow_job_creates[0] > 0
            if late:
                self.slow_job_creates[0] -= 1
        if late:  # made, and its answer lost to the client's timeout
            time.sleep(self.slow_job_creates[1])
        return 200, self.job_json(job)

    def stage(self, job: FineTuneJob) -> str:
        stages = ["validating_files", "queued", "running", "succeeded"]
        return stages[min(job.polls // self.polls_per_stage, len(stages) - 1)]

    def poll(self, job_id: str) -> tuple[int, dict[str, Any]]:
        job = self.jobs.get(job_id)
        if job is None:
            return 404, {"error": {"message": "no such job", "type": "invalid", "param": None,
                                   "code": None}}
        job.polls += 1
        data = self.job_json(job)
        if data["status"] == "succeeded" and data["fine_tuned_model"] not in self.fine_tuned:
            self.fine_tuned[data["fine_tuned_model"]] = self._training_pairs(job)
        return 200, data

    def _training_pairs(self, job: FineTuneJob) -> list[tuple[str, str]]:
        pairs = []
        for line in self.files[job.training_file].decode().splitlines():
            msgs = json.loads(line)["messages"]
            pairs.append((msgs[-2]["content"], msgs[-1]["content"]))
        return pairs

    def trained_tokens(self, job: FineTuneJob) -> int:
        text = self.files[job.training_file].decode()
        per_epoch = sum(len(words(m["content"])) + 4 for line in text.splitlines()
                        for m in json.loads(line)["messages"])
        return per_epoch * job.n_epochs

    def job_json(self, job: FineTuneJob) -> dict[str, Any]:
        status = self.stage(job)
        done = status == "succeeded"
        ft_model = f"ft:{job.model}:evalkit:{job.suffix or ''}:{job.id}" if done else None
        return {"id": job.id, "object": "fine_tuning.job", "created_at": job.created_at,
                "error": None, "fine_tuned_model": ft_model,
                "finished_at": int(time.time()) if done else None,
                "hyperparameters": {"n_epochs": job.n_epochs, "batch_size": 1,
                                    "learning_rate_multiplier": 1.0},
                "model": job.model, "organization_id": "org-test", "result_files": [],
                "seed": 0, "status": status,
                "trained_tokens": self.trained_tokens(job) if done else None,
                "training_file": job.training_file, "validation_file": None,
                "estimated_finish": None, "integrations": [], "metadata": None, "method": None}

    def events(self, job_id: str) -> tuple[int, dict[str, Any]]:
        job = self.jobs.get(job_id)
        if job is None:
            return 404, {"error": {"message": "no such job", "type": "invalid", "param": None,
                                   "code": None}}
        reached = ["validating_files", "queued", "running", "succeeded"]
        reached = reached[:reached.index(self.stage(job)) + 1]
        events = [{"id": f"ftevent-{job.id}-{i}", "object": "fine_tuning.job.event",
                   "created_at": job.created_at + i, "level": "info",
                   "message": f"Job entered {s}", "type": "message", "data": {}}
                  for i, s in enumerate(reached)]
        return 200, {"object": "list", "data": list(reversed(events)), "has_more": False}


def _record_keys(body: dict[str, Any], messages: list[dict[str, str]]) -> list[str]:
    """The keys an extraction request asks for: the schema's properties, else the keys the
    system prompt lists under "JSON object with exactly these keys"; [] for other tasks."""
    schema = ((body.get("response_format") or {}).get("json_schema") or {}).get("schema") or {}
    if schema.get("properties"):
        return list(schema["properties"])
    system = messages[0]["content"] if messages and messages[0]["role"] == "system" else ""
    if "JSON object with exactly these keys" not in system:
        return []
    listed = system.split("JSON object with exactly these keys", 1)[1]
    return re.findall(r"^- ([A-Za-z0-9_]+): ", listed, flags=re.M)


def _overlap(a: str, b: str) -> float:
    wa, wb = set(words(a)), set(words(b))
    if not wa or not wb:
        return 0.0
    return len(wa & wb) / math.sqrt(len(wa) * len(wb))


def embed(text: str, dims: int = 64) -> list[float]:
    """A deterministic bag-of-words embedding: hashed word counts, L2-normalised."""
    vec = [0.0] * dims
    for w in words(text):
        vec[int(hashlib.md5(w.encode()).hexdigest()[:8], 16) % dims] += 1.0
    norm = math.sqrt(sum(v * v for v in vec)) or 1.0
    return [v / norm for v in vec]


class _Handler(BaseHTTPRequestHandler):
    server_state: FakeOpenAI
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # quiet
        pass

    def setup(self) -> None:
        super().setup()
        # headers and body go out in separate writes: without this, Nagle + delayed ACK
        # add ~40 ms to every keep-alive response
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _send(self, status: int, headers: dict[str, str], body: bytes) -> None:
        try:
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout): nothing to do

    def _json(self, status: int, payload: dict[str, Any]) -> None:
        self._send(status, {"content-type": "application/json"}, json.dumps(payload).encode())

    def _authorised(self) -> bool:
        expected = self.server_state.api_key
        if expected is None or self.headers.get("authorization") == f"Bearer {expected}":
            return True
        given = (self.headers.get("authorization") or "").removeprefix("Bearer ")
        # like some servers, echo the key it got: the client must scrub it before logging
        self._json(401, {"error": {"message": f"Incorrect API key provided: {given}", "type":
                                   "invalid_request_error", "param": None,
                                   "code": "invalid_api_key"}})
        return False

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("content-length") or 0))

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        state, path = self.server_state, self.path.split("?")[0]
        raw = self._body()
        if not self._authorised():
            return
        if path == "/v1/files":
            self._json(200, state.upload(self.headers.get("content-type", ""), raw))
            state.record(Recorded("POST", path, 200, at=time.time()))
            return
        body = json.loads(raw or b"{}")
        if path == "/v1/chat/completions":
            status, headers, payload, rec = state.chat(body)
            rec.retry_count = self.headers.get("x-stainless-retry-count")
            rec.headers = {k.lower(): v for k, v in self.headers.items()}
            self._send(status, headers, payload)
        elif path == "/v1/embeddings":
            status, headers, payload, _ = state.embeddings(body)
            self._send(status, headers, payload)
        elif path == "/v1/batches":
            status, data = state.create_batch(body)
            state.record(Recorded("POST", path, status, at=time.time(), body=body))
            self._json(status, data)
        elif path == "/v1/fine_tuning/jobs":
            status, data = state.create_job(body)
            state.record(Recorded("POST", path, status, body.get("model"), at=time.time(),
                                  body=body))
            self._json(status, data)
        else:
            self._json(404, {"error": {"message": f"no route {path}", "type": "invalid",
                                       "param": None, "code": None}})

    def do_GET(self) -> None:  # noqa: N802
        state, path = self.server_state, self.path.split("?")[0]
        if not self._authorised():
            return
        m = re.fullmatch(r"/v1/fine_tuning/jobs/([^/]+)(/events)?", path)
        if m:
            status, data = state.events(m.group(1)) if m.group(2) else state.poll(m.group(1))
            state.record(Recorded("GET", path, status, at=time.time()))
            self._json(status, data)
        elif m := re.fullmatch(r"/v1/batches/([^/]+)", path):
            status, data = state.poll_batch(m.group(1))
            state.record(Recorded("GET", path, status, at=time.time()))
            self._json(status, data)
        elif path == "/v1/batches":
            self._json(200, {"object": "list", "has_more": False, "data": [
                state._batch_json(b) for b in reversed(list(state.batches.values()))]})
        elif path == "/v1/fine_tuning/jobs":  # newest first, one page
            self._json(200, {"object": "list", "has_more": False, "data": [
                state.job_json(j) for j in reversed(list(state.jobs.values()))]})
        elif m := re.fullmatch(r"/v1/files/([^/]+)/content", path):
            data = state.files.get(m.group(1))
            if data is None:
                self._json(404, {"error": {"message": "no such file", "type": "invalid",
                                           "param": None, "code": None}})
            else:
                self._send(200, {"content-type": "application/octet-stream"}, data)
        elif path == "/v1/models":
            names = list(state.served_models or ()) + list(state.fine_tuned)
            self._json(200, {"object": "list", "data": [
                {"id": n, "object": "model", "created": 0, "owned_by": "test"} for n in names]})
        else:
            self._json(404, {"error": {"message": f"no route {path}", "type": "invalid",
                                       "param": None, "code": None}})


# --- helpers shared by the tests of the openai provider, judge, pricing and fine-tuning ------

KEY = "test-key-SECRET-123"
FIXTURES = __import__("pathlib").Path(__file__).parent / "fixtures"


def assert_key_nowhere(*folders) -> int:
    """Fail if the API key's text is in any file under `folders`; return how many were read."""
    from pathlib import Path

    read = 0
    for folder in folders:
        for path in Path(folder).rglob("*"):
            if path.is_file():
                read += 1
                assert KEY.encode() not in path.read_bytes(), f"API key written to {path}"
    return read


def cli(*args: str, ok: bool = True):
    """Run `evalkit ARGS` in-process; by default require exit code 0."""
    from click.testing import CliRunner

    from evalkit.cli import main

    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    if ok:
        assert result.exit_code == 0, result.output
    return result


def read_jsonl(path) -> list[dict[str, Any]]:
    from pathlib import Path

    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


@pytest.fixture(autouse=True)
def openai_env(monkeypatch):
    """The test key in the environment, and no OPENAI_BASE_URL leaking in from the shell."""
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)


def run_dirs_args(tmp_path) -> list:
    """`evalkit run` flags that keep reports, cache and fine-tunes inside tmp_path."""
    return ["--reports-dir", tmp_path / "reports", "--cache-dir", tmp_path / "cache",
            "--finetune-dir", tmp_path / "finetunes", "--no-progress", "--no-report"]


def serve(argv: list[str] | None = None) -> None:
    """`python tests/openai_server.py --port 8000`: the same server outside a test, for
    docs/tutorial-intent.md's OpenAI-compatible half on a machine with no model server. It is
    a stand-in that speaks the protocol (a word-overlap "model"), not a model to measure."""
    import argparse

    parser = argparse.ArgumentParser(description=serve.__doc__)
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    with FakeOpenAI(port=args.port) as server:
        print(f"serving {server.base_url} (Ctrl-C stops it)", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    serve()
