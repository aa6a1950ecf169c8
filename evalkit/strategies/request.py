"""The structured Request a variant builds for one item, and its rendering to chat messages.

Providers see only the Request: instructions, label descriptions, few-shot examples, passages
and the input. The local provider reads its fields directly; LLM providers get `messages()`,
rendered through jinja2 templates. The fine-tuning file is built from the same rendering, so
the fine-tuned rung sees at inference exactly what it was trained on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2

from evalkit.strategies.retrieval import Passage

# json.dumps(value, sort_keys=True, ensure_ascii=False, default=str), the cache key's
# serialisation, without the encoder json.dumps builds for every call with options
_KEY_JSON = json.JSONEncoder(sort_keys=True, ensure_ascii=False, default=str)
# a JSON string literal as _KEY_JSON writes one (the same C function it calls for each str)
_string = json.encoder.encode_basestring
# (role, text) -> its message's JSON, for the messages that repeat from item to item (the
# system prompt, few-shot turns); bounded like evalkit/run/sent.py's memo, cleared when full
_MESSAGE_JSON: dict[tuple[str, str], str] = {}
MESSAGE_MEMO = 4096


@dataclass(frozen=True)
class Example:
    input: str
    output: str


@dataclass(frozen=True)
class Request:
    task_type: str
    instructions: str
    input: str
    labels: tuple[tuple[str, str], ...] = ()  # (label, description) pairs, in task order
    fields: tuple[tuple[str, str], ...] = ()  # (field, description) pairs of a JSON record
    examples: tuple[Example, ...] = ()
    passages: tuple[Passage, ...] = ()
    model: str | None = None  # a variant may pin a model (the fine-tuned rungs do)
    # What the answer must look like, as an OpenAI `response_format` (e.g. a JSON schema):
    # the task type's `response_format` hook decides; None asks for plain text.
    response_format: dict[str, Any] | None = None

    def messages(self) -> list[dict[str, str]]:
        """Chat messages: system (instructions + labels), example turns, then the input.

        Rendered once per Request (the runner's cache key and the provider both ask), kept
        beside the frozen fields; each call returns fresh dicts the caller may change."""
        return [dict(m) for m in self.rendered()]

    def rendered(self) -> list[dict[str, str]]:
        """`messages()` without the copy, for readers on the hot path (the journal's
        messages log, the budget's bound, the answer's read): they must not change it."""
        rendered = self.__dict__.get("_messages")
        if rendered is None:
            rendered = self.__dict__["_messages"] = self._render_messages()
        return rendered

    def messages_json(self) -> str:
        """`messages()` as JSON, sorted keys, non-ASCII kept (the cache key's serialisation),
        made once per Request: the runner's cache key and the provider's request body both
        embed it, so the rendered prompt is serialised once, not once each."""
        text = self.__dict__.get("_messages_json")
        if text is None:
            text = self.__dict__["_messages_json"] = _messages_json(self.rendered())
        return text

    def _render_messages(self) -> list[dict[str, str]]:
        msgs = [{"role": "system", "content": _system(self.instructions, self.labels, self.fields)}]
        for ex in self.examples:
            msgs.append({"role": "user", "content": ex.input})
            msgs.append({"role": "assistant", "content": ex.output})
        msgs.append({"role": "user", "content": _user(self.input, self.passages)})
        return msgs


def _messages_json(messages: list[dict[str, str]]) -> str:
    """`_KEY_JSON.encode(messages)`, byte for byte, each message written as the encoder
    writes a {"role", "content"} dict (keys sorted, ", " and ": " separators) and every one
    but the last (the item's own input) taken from `_MESSAGE_JSON` when seen before: the
    system prompt is the longest text of most requests and the same for every item, so
    escaping it once per run instead of once per item is most of the serialisation saved."""
    parts = []
    last = len(messages) - 1
    for i, m in enumerate(messages):
        role, content = m.get("role"), m.get("content")
        if type(role) is not str or type(content) is not str or len(m) != 2:
            return _KEY_JSON.encode(messages)  # not the shape assembled here
        memo = (role, content)
        part = _MESSAGE_JSON.get(memo) if i < last else None
        if part is None:
            part = f'{{"content": {_string(content)}, "role": {_string(role)}}}'
            if i < last:
                if len(_MESSAGE_JSON) >= MESSAGE_MEMO:
                    _MESSAGE_JSON.clear()
                _MESSAGE_JSON[memo] = part
        parts.append(part)
    return "[" + ", ".join(parts) + "]"


@lru_cache(maxsize=256)
def _system(instructions: str, labels: tuple[tuple[str, str], ...],
            fields: tuple[tuple[str, str], ...] = ()) -> str:
    """The system message, the same for every item of a task: rendered once per task."""
    return _render("system.j2", instructions=instructions, labels=labels, fields=fields)


def _user(input: Any, passages: tuple[Passage, ...]) -> str:
    """The user message. Without passages user.j2 renders `{{ input }}` alone, which for a
    string is the string itself: that case (every prompt-only and few-shot request) skips
    jinja's per-render context (~8 us); tests/test_variants.py checks both agree."""
    if not passages and isinstance(input, str):
        return input.strip()
    return _render("user.j2", input=input, passages=passages)


@lru_cache(maxsize=1)
def _env() -> jinja2.Environment:
    loader = jinja2.FileSystemLoader(Path(__file__).parent / "templates")
    # Prompts are plain text, not HTML: no autoescape here (the report escapes on its side).
    # auto_reload=False: the templates ship with the package; don't stat them on every render
    return jinja2.Environment(loader=loader, autoescape=False, keep_trailing_newline=False,
                              undefined=jinja2.StrictUndefined, auto_reload=False)


def _render(name: str, **ctx) -> str:
    return _env().get_template(name).render(**ctx).strip()
