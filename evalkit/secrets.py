"""One scrubber for every string from a provider that may reach disk or a report.

Removes the configured key (the value of each registered environment variable, by default
OPENAI_API_KEY) and key-shaped values: `sk-...`, `Bearer ...`, GitHub tokens (`ghp_...`,
`github_pat_...`), URL userinfo (`http://user:pass@host`) and credential-named URL query
parameters (`?api-key=...`, `&token=...`, `sig=...`). Applied by the OpenAI provider to
errors and malformed bodies, by the journal to every field before it writes, and to every
message text recorded in messages.jsonl (evalkit/run/sent.py: a key pasted into a test item or
an instruction file), so a proxy's login page echoing the key cannot land in predictions.jsonl
or the report. Texts holding none of the patterns' literals skip the regexes (`scrub`).
"""

from __future__ import annotations

import os
import re

REDACTED = "[redacted]"
_KEY_ENVS: set[str] = {"OPENAI_API_KEY"}
_KEY_SHAPED = re.compile(r"\b(?:sk-[A-Za-z0-9_\-*]{6,}|gh[pousr]_[A-Za-z0-9]{8,}|"
                         r"github_pat_[A-Za-z0-9_]{8,})|Bearer\s+[A-Za-z0-9._~+/=\-]{6,}")
_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.\-]*://)[^/\s@]+@")
# a URL query parameter named like a credential (?api-key=, &key=, access_token=, an Azure SAS
# sig=): gateways that take the key in the URL put it in every error that quotes the URL
_QUERY_SECRET = re.compile(r"(?P<name>[?&;](?:[A-Za-z0-9.]*[_\-])?(?:api[_\-]?key|key|token|"
                           r"secret|password|passwd|auth|sig|signature|credentials?)=)"
                           r"[^&#;\s'\"]+", re.IGNORECASE)


def register_key_env(name: str) -> None:
    """Scrub this environment variable's value too (a provider's `api_key_env`)."""
    _KEY_ENVS.add(name)
    _SEEN.names = None


_GITHUB = re.compile(r"gh[pousr]_")


def key_values() -> tuple[str, ...]:
    """The values of the registered key variables now (those long enough to scrub), longest
    first (a key inside another is then replaced after it, not through it).

    Read on every call, since a key may be set at any time, but cheaply: `os.environ.get`
    encodes the name and decodes the value each time (~0.5 us a variable, twice per
    journal line), so the raw values are looked up in the environment's own mapping and
    decoded only when they changed since the last call."""
    env = os.environ
    if env is not _SEEN.environ:  # the first call (or os.environ was replaced)
        data, encode = getattr(env, "_data", None), getattr(env, "encodekey", None)
        _SEEN.environ, _SEEN.names, _SEEN.raw = env, None, None
        _SEEN.data = data if isinstance(data, dict) and encode is not None else None
        _SEEN.encode = encode
    data = _SEEN.data
    if data is None:  # not CPython's os._Environ
        return _usable(os.environ.get(name) for name in _KEY_ENVS)
    if _SEEN.names is None:  # since the last register_key_env
        _SEEN.names = tuple(_SEEN.encode(name) for name in _KEY_ENVS)
    raw = tuple(map(data.get, _SEEN.names))
    if raw != _SEEN.raw:
        _SEEN.raw, _SEEN.keys = raw, _usable(map(os.environ.decodevalue, filter(None, raw)))
    return _SEEN.keys


def _usable(values) -> tuple[str, ...]:
    return tuple(sorted((v for v in values if v and len(v) >= 4), key=len, reverse=True))


class _Seen:
    """`key_values`' memo: the registered names as the environment keys them, the raw values
    last read, and the keys made of them."""

    environ: object = None  # the os.environ these were read from
    data: dict | None = None  # its mapping of encoded names to encoded values
    encode: object = None  # how it encodes a name
    names: tuple | None = None
    raw: tuple | None = None
    keys: tuple[str, ...] = ()


_SEEN = _Seen()


def _nothing_to_scrub(text: str, keys: tuple[str, ...]) -> bool:
    """True when no pattern below can match: none of the literal parts every match needs is
    in `text` (substring tests, far cheaper than the regexes on a long prompt)."""
    if "://" in text or "sk-" in text or "Bearer" in text or "github_pat_" in text:
        return False
    if "_" in text and _GITHUB.search(text):
        return False
    for key in keys:  # a loop, not any(...): no generator made per text, most have no key
        if key in text:
            return False
    return True


def scrub(text: str, *, keys: tuple[str, ...] | None = None) -> str:
    """`text` with the configured keys and key-shaped values replaced by [redacted].
    `keys`: `key_values()` read by the caller for several texts (else read here)."""
    if keys is None:
        keys = key_values()
    if _nothing_to_scrub(text, keys):
        return text
    for key in keys:
        if key in text:
            text = text.replace(key, REDACTED)
    # the patterns only match text holding one of these literals: most text (every journal
    # line's output and model) is passed over by substring checks instead of two regexes
    if "sk-" in text or "gh" in text or "github_pat_" in text or "Bearer" in text:
        text = _KEY_SHAPED.sub(REDACTED, text)
    if "://" in text:
        if "@" in text:
            text = _USERINFO.sub(lambda m: m.group("scheme") + REDACTED + "@", text)
        text = scrub_query(text)
    return text


def scrub_query(url: str) -> str:
    """`url` with the values of its credential-named query parameters replaced by [redacted]."""
    if "=" not in url:
        return url
    return _QUERY_SECRET.sub(lambda m: m.group("name") + REDACTED, url)


def credential_in(value: str) -> str | None:
    """Why `value` looks like a credential (key-shaped, or a URL with userinfo), else None."""
    if _USERINFO.search(value):
        return "a URL with user:password@ (credentials) in it"
    if "://" in value and _QUERY_SECRET.search(value):
        return "a URL with a key in its query string (?key=...)"
    if _KEY_SHAPED.search(value) or value.strip().startswith(("sk-", "Bearer ")):
        return "a key-shaped value"
    return None
