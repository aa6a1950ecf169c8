"""OpenAI's Batch API (and compatible batch endpoints) for the `openai` provider.

A batch is a JSONL file of Chat Completions requests, one per line with a `custom_id`,
uploaded with purpose "batch" and answered within a completion window (24 h on OpenAI) at a
discount (50 % on OpenAI: `pricing.batch_discount`). The same JSONL is what vLLM's offline
batch runner reads. This module only speaks the API — upload, create, retrieve, list, fetch
results — through the official SDK's synchronous client (a batch is polled every few seconds
or minutes; there is nothing for asyncio to overlap). Deciding what to submit, remembering
what was submitted, and journaling answers is the runner's job (evalkit.run.batch).

Errors come back with the key scrubbed (evalkit.secrets), like the live provider's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from evalkit import secrets
from evalkit.providers.base import Completion
from evalkit.providers.openai import OpenAIProvider, OpenAIProviderError

ENDPOINT = "/v1/chat/completions"
COMPLETION_WINDOW = "24h"
# OpenAI's per-batch limits (https://platform.openai.com/docs/guides/batch): 50,000 requests
# and a 200 MB input file. Runs larger than that are split into several batches.
MAX_REQUESTS = 50_000
MAX_BYTES = 200 * 1024 * 1024
DONE = ("completed", "failed", "expired", "cancelled")


class BatchError(OpenAIProviderError):
    """A batch call failed (upload, create, retrieve or download); key scrubbed."""


@dataclass(frozen=True)
class BatchStatus:
    """What a poll learns about one batch."""

    id: str
    status: str  # validating, in_progress, finalizing, completed, failed, expired, cancelled...
    output_file_id: str | None
    error_file_id: str | None
    completed: int
    failed: int
    total: int
    input_file_id: str | None = None

    @property
    def done(self) -> bool:
        return self.status in DONE


@dataclass(frozen=True)
class BatchResult:
    """One line of a batch's output or error file: a chat completion body, or why not."""

    custom_id: str
    body: dict[str, Any] | None
    error: str | None


class OpenAIBatches:
    """Upload, submit, poll and read batches on the provider's server (its base URL)."""

    def __init__(self, provider: OpenAIProvider, *, base_url: str | None = None):
        from openai import OpenAI

        self.provider = provider
        self.base_url = base_url if base_url is not None else provider.base_url
        self._client = OpenAI(api_key=provider._api_key(self.base_url), base_url=self.base_url,
                              max_retries=provider.max_retries, timeout=provider.timeout_s)

    def line(self, custom_id: str, request: Any) -> dict[str, Any]:
        """One JSONL line: the very body a live call would send."""
        return {"custom_id": custom_id, "method": "POST", "url": ENDPOINT,
                "body": self.provider.body(request)}

    def upload(self, lines: list[dict[str, Any]]) -> str:
        """Upload a batch input file; returns its file id."""
        data = "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines)
        return self._call(lambda: self._client.files.create(
            file=("batch.jsonl", data.encode("utf-8"), "application/jsonl"),
            purpose="batch")).id

    def create(self, input_file_id: str, *, metadata: dict[str, str]) -> str:
        """Start a batch over an uploaded file; returns the batch id."""
        return self._call(lambda: self._client.batches.create(
            input_file_id=input_file_id, endpoint=ENDPOINT,
            completion_window=COMPLETION_WINDOW, metadata=metadata)).id

    def find(self, input_file_id: str) -> str | None:
        """The batch already created over this input file, if any (after a kill between
        `create` returning and the run folder recording its id)."""
        page = self._call(lambda: self._client.batches.list(limit=100))
        for batch in getattr(page, "data", []) or []:
            if getattr(batch, "input_file_id", None) == input_file_id:
                return batch.id
        return None

    def retrieve(self, batch_id: str) -> BatchStatus:
        b = self._call(lambda: self._client.batches.retrieve(batch_id))
        counts = getattr(b, "request_counts", None)
        return BatchStatus(id=b.id, status=str(b.status),
                           output_file_id=getattr(b, "output_file_id", None),
                           error_file_id=getattr(b, "error_file_id", None),
                           completed=int(getattr(counts, "completed", 0) or 0),
                           failed=int(getattr(counts, "failed", 0) or 0),
                           total=int(getattr(counts, "total", 0) or 0),
                           input_file_id=getattr(b, "input_file_id", None))

    def results(self, status: BatchStatus) -> list[BatchResult]:
        """Every line of the output and error files (price them with `completion`)."""
        out = []
        for file_id in (status.output_file_id, status.error_file_id):
            if file_id:
                text = self._call(lambda f=file_id: self._client.files.content(f).text)
                out += [self._result(line) for line in text.splitlines() if line.strip()]
        return out

    # --- internals --------------------------------------------------------------------------

    def _result(self, line: str) -> BatchResult:
        try:
            row = json.loads(line)
            custom_id = str(row["custom_id"])
        except (ValueError, KeyError, TypeError):
            raise BatchError(f"a batch result line is not JSON with a custom_id: "
                             f"{secrets.scrub(line[:200])!r}") from None
        response = row.get("response") or {}
        body = response.get("body") if isinstance(response, dict) else None
        if row.get("error") or not isinstance(body, dict) or response.get("status_code") != 200:
            detail = row.get("error") or (body or {}).get("error") or body
            return BatchResult(custom_id, None, secrets.scrub(
                f"batch request failed (status {response.get('status_code')}): "
                f"{json.dumps(detail, default=str)[:400]}"))
        return BatchResult(custom_id, body, None)

    def completion(self, result: BatchResult, *, model: str) -> Completion:
        """The answer of one result line, priced at the batch rate for the requested model
        (as live calls are: servers may name the model otherwise in their answer)."""
        return self.provider.completion_from_body(result.body or {}, model=model, batch=True)

    def _call(self, fn):
        try:
            return fn()
        except Exception as exc:
            raise BatchError(f"{type(exc).__name__}: {secrets.scrub(str(exc))}") from None
