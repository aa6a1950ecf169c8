"""The experiment config file (YAML): read once, at the start of a command, into one typed
`ExperimentConfig` whose sections are handed down to the modules that use them.

Sections and who reads them: `economics` (evalkit.analysis.economics), `gate`
(evalkit.gate.check), `pricing` (evalkit.providers.pricing), `provider` (provider options such
as base_url, model), `judge` (evalkit.scoring.judge), `compare` (evalkit.analysis.summary);
`variants` (declared variants, typed here as `VariantDecl`, resolved against the preset kinds
in evalkit.strategies.variants) and `epochs` (how many times each item runs). Nobody re-reads
the file: a command calls `load_config` once and passes the object on. Each consumer
validates its own mapping section and names the file and field in its errors through
`ConfigError`; this module validates `variants` and `epochs` itself, with the line of the
offending field, and refuses credentials anywhere.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from evalkit.secrets import credential_in

KNOWN_SECTIONS = ("economics", "gate", "pricing", "provider", "judge", "compare", "variants",
                  "epochs")
MAPPING_SECTIONS = ("economics", "gate", "pricing", "provider", "judge")
# An `instructions:` value ending so is a file path (relative to the config), not inline text.
INSTRUCTION_FILE_SUFFIXES = (".txt", ".md", ".j2", ".jinja", ".prompt")


class ConfigError(ValueError):
    """A problem in the experiment config, located by file, line and field. The line is
    the one given, else found from the field (so no caller has to carry YAML marks)."""

    def __init__(self, path: Path | str | None, message: str, *, field: str | None = None,
                 line: int | None = None):
        self.path, self.field = (str(path) if path else "<config>"), field
        if line is None and path and field:
            line = line_of(path, field)
        self.line = line
        where = f"{self.path}:{line}:" if line else f"{self.path}:"
        super().__init__(f"{where}{f' field {field!r}:' if field else ''} {message}")


def line_of(path: Path | str, field: str) -> int | None:
    """The 1-based line of the dotted `field` (`economics.variants.rag`, `compare[0]`) in the
    YAML file at `path`, or of the deepest part of it the file has; None if it has none."""
    try:
        node = yaml.compose(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeError, yaml.YAMLError):
        return None
    line = None
    for part in re.findall(r"\[\d+\]|[^.\[\]]+", field):
        if isinstance(node, yaml.MappingNode):
            found = [(k, v) for k, v in node.value if getattr(k, "value", None) == part]
            if not found:
                break
            line, node = found[0][0].start_mark.line + 1, found[0][1]
        elif isinstance(node, yaml.SequenceNode) and part.startswith("["):
            if int(part[1:-1]) >= len(node.value):
                break
            node = node.value[int(part[1:-1])]
            line = node.start_mark.line + 1
        else:
            break
    return line


@dataclass(frozen=True)
class FewShotDecl:
    """`few_shot:` of a declared variant; None keeps the base's value."""

    k: int | None = None
    selection: str | None = None  # "similar" or "fixed"


@dataclass(frozen=True)
class RagDecl:
    """`rag:` of a declared variant; None keeps the base's (task.yaml's) value."""

    k: int | None = None
    retriever: str | None = None  # "tfidf" or "embeddings" (provider.embedding_model)
    chunk_size: int | None = None
    chunk_overlap: int | None = None


@dataclass(frozen=True)
class VariantDecl:
    """One entry of `variants:`: a preset (`base`) and what this variant changes in it.

    Every override is optional (None: the base's, or the run's, value). `instructions` holds
    the text, read from `instructions_file` when the config gave a path. `line` is where the
    entry starts, for errors found later (an unknown base, a provider that does not exist).
    """

    name: str
    base: str
    provider: str | None = None
    model: str | None = None
    base_url: str | None = None
    instructions: str | None = None
    instructions_file: str | None = None
    few_shot: FewShotDecl | None = None
    rag: RagDecl | None = None
    fine_tuned_model: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    seed: int | None = None
    line: int | None = field(default=None, compare=False)


@dataclass(frozen=True)
class ExperimentConfig:
    """The whole config, read once. `sections` is the raw mapping (copied into run.json)."""

    path: Path | None = None
    sections: dict[str, Any] = field(default_factory=dict)
    variants: tuple[VariantDecl, ...] = ()
    epochs: int | None = None

    def section(self, name: str) -> dict[str, Any]:
        value = self.sections.get(name) or {}
        if not isinstance(value, dict):
            raise ConfigError(self.path, "must be a mapping", field=name)
        return value

    def variant(self, name: str) -> VariantDecl | None:
        return next((v for v in self.variants if v.name == name), None)

    def error(self, message: str, *, field: str, line: int | None = None) -> ConfigError:
        return ConfigError(self.path, message, field=field, line=line)


def load_config(path: Path | str | None) -> ExperimentConfig:
    """Load and validate an experiment config; None gives the empty config (all defaults)."""
    if path is None:
        return ExperimentConfig()
    path = Path(path)
    if not path.is_file():
        raise ConfigError(path, "config file not found")
    text = path.read_text(encoding="utf-8")
    try:
        raw = yaml.safe_load(text) or {}
        root = yaml.compose(text)
    except yaml.YAMLError as exc:
        raise ConfigError(path, f"invalid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(path, "the config must be a mapping of sections")
    at = _Lines(path, root)
    for name in raw:
        if name not in KNOWN_SECTIONS:
            close = difflib.get_close_matches(str(name), KNOWN_SECTIONS, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise at.error(f"unknown section; {hint}known: {', '.join(KNOWN_SECTIONS)}",
                           [name], key=True)
    refuse_secrets(raw, path, lines=at)
    for name in MAPPING_SECTIONS:
        if raw.get(name) is not None and not isinstance(raw[name], dict):
            raise at.error("must be a mapping", [name])
    return ExperimentConfig(path, raw, _variants(raw.get("variants"), at),
                            _epochs(raw.get("epochs"), at))


class _Lines:
    """Finds the line of a field (a path of keys and list indices) in the YAML node tree."""

    def __init__(self, path: Path, root: yaml.Node | None):
        self.path, self.root = path, root

    def line(self, parts: list, *, key: bool = False) -> int | None:
        node, found = self.root, None
        for part in parts:
            if isinstance(node, yaml.MappingNode):
                pair = next(((k, v) for k, v in node.value if k.value == str(part)), None)
                if pair is None:
                    break
                found, node = (pair[0] if key else pair[1]), pair[1]
            elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) \
                    and part < len(node.value):
                found = node = node.value[part]
            else:
                break
        return found.start_mark.line + 1 if found is not None else None

    def error(self, message: str, parts: list, *, key: bool = False) -> ConfigError:
        return ConfigError(self.path, message, field=_dotted(parts),
                           line=self.line(parts, key=key))


def _dotted(parts: list) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def _epochs(raw: Any, at: _Lines) -> int | None:
    if raw is None:
        return None
    if type(raw) is not int or raw < 1:
        raise at.error(f"must be a whole number >= 1, got {raw!r}", ["epochs"])
    return raw


# (type check, what to say) per override; bool is refused where a number is meant
_TEXT = (lambda v: isinstance(v, str) and v.strip() != "", "a non-empty string")
# a name is printed to terminals, CI logs and the report: no control characters (ANSI
# escapes, newlines) and no invisible format characters (bidi overrides, zero-width), which
# would let a config rewrite the lines around it or make two names look alike
_NAME = (lambda v: isinstance(v, str) and v.strip() != "" and not any(
    unicodedata.category(c) in ("Cc", "Cf") for c in v),
    "a non-empty name of printable characters (no control or invisible format characters)")
_WHOLE = (lambda v: type(v) is int and v >= 0, "a whole number >= 0")
_POSITIVE = (lambda v: type(v) is int and v >= 1, "a whole number >= 1")
_INT = (lambda v: type(v) is int, "a whole number")
_TEMPERATURE = (lambda v: type(v) in (int, float) and 0 <= v <= 2, "a number from 0 to 2")
_SCALARS = {"name": _NAME, "base": _TEXT, "provider": _TEXT, "model": _TEXT,
            "base_url": _TEXT, "instructions": _TEXT, "fine_tuned_model": _TEXT,
            "temperature": _TEMPERATURE, "max_tokens": _POSITIVE, "seed": _INT}
_NESTED = {
    "few_shot": (FewShotDecl, {"k": _WHOLE, "selection": (
        lambda v: v in ("similar", "fixed"), "'similar' or 'fixed'")}),
    "rag": (RagDecl, {"k": _WHOLE, "retriever": (
        lambda v: v in ("tfidf", "embeddings"), "'tfidf' or 'embeddings'"),
        "chunk_size": _POSITIVE, "chunk_overlap": _WHOLE}),
}
VARIANT_KEYS = (*_SCALARS, *_NESTED)


def _variants(raw: Any, at: _Lines) -> tuple[VariantDecl, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise at.error("must be a list of variants, each with a name and a base",
                       ["variants"])
    out: list[VariantDecl] = []
    for i, entry in enumerate(raw):
        decl = _variant(entry, at, i)
        if any(v.name == decl.name for v in out):
            raise at.error(f"variant {decl.name!r} is declared twice", ["variants", i, "name"])
        out.append(decl)
    return tuple(out)


def _variant(entry: Any, at: _Lines, i: int) -> VariantDecl:
    where = ["variants", i]
    if not isinstance(entry, dict):
        raise at.error("must be a mapping with at least name and base", where)
    _known(entry, VARIANT_KEYS, at, where)
    for key in ("name", "base"):
        if key not in entry:
            raise at.error(f"{key} is required", [*where, key] if key in entry else where)
    values: dict[str, Any] = {}
    for key, (ok, what) in _SCALARS.items():
        if key in entry:
            if not ok(entry[key]):
                raise at.error(f"must be {what}, got {entry[key]!r}", [*where, key])
            values[key] = entry[key]
    for key, (cls, spec) in _NESTED.items():
        if key in entry:
            values[key] = _nested(entry[key], cls, spec, at, [*where, key])
    rag = values.get("rag")
    if rag and rag.chunk_size is not None and rag.chunk_overlap is not None \
            and rag.chunk_overlap >= rag.chunk_size:
        raise at.error(f"must be smaller than chunk_size ({rag.chunk_size})",
                       [*where, "rag", "chunk_overlap"])
    if "instructions" in values:
        values.update(_instructions(values["instructions"], at, [*where, "instructions"]))
    if isinstance(values.get("temperature"), int):
        values["temperature"] = float(values["temperature"])
    return VariantDecl(**values, line=at.line(where))


def _nested(raw: Any, cls: type, spec: dict, at: _Lines, where: list) -> Any:
    if not isinstance(raw, dict):
        raise at.error(f"must be a mapping of {', '.join(spec)}", where)
    _known(raw, tuple(spec), at, where)
    for key, (ok, what) in spec.items():
        if key in raw and not ok(raw[key]):
            raise at.error(f"must be {what}, got {raw[key]!r}", [*where, key])
    return cls(**raw)


def _known(raw: dict, known: tuple[str, ...], at: _Lines, where: list) -> None:
    for key in raw:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise at.error(f"unknown key; {hint}known: {', '.join(known)}", [*where, key],
                           key=True)


def _instructions(value: str, at: _Lines, where: list) -> dict[str, str]:
    """Inline text, or (one line ending in a file suffix) a file relative to the config."""
    if "\n" in value.strip() or not value.strip().endswith(INSTRUCTION_FILE_SUFFIXES):
        return {"instructions": value}
    file = (at.path.parent / value.strip()).resolve()
    if not file.is_file():
        raise at.error(f"instructions file {value.strip()!r} not found (looked in {file}); "
                       f"paths are relative to the config file", where)
    text = file.read_text(encoding="utf-8").strip()
    if not text:
        raise at.error(f"instructions file {value.strip()!r} is empty", where)
    return {"instructions": text, "instructions_file": value.strip()}


def decl_overrides(decl: VariantDecl) -> dict[str, Any]:
    """The overrides a declaration sets (None fields left out), for messages and records."""
    out = {}
    for f in fields(decl):
        value = getattr(decl, f.name)
        if f.name in ("name", "base", "line") or value is None:
            continue
        out[f.name] = ({k: v for k, v in vars(value).items() if v is not None}
                       if isinstance(value, (FewShotDecl, RagDecl)) else value)
    return out


# Names that hold credentials. The config is copied into run.json and the HTML report, so a
# key written here would reach disk and every reader of a CI artifact.
_SECRET_NAME = re.compile(r"^(\w+[_-])?(api[_-]?key|key|secret|token|bearer|password|passwd|"
                          r"authorization|credentials?)$", re.IGNORECASE)


def refuse_secrets(node: Any, path: Path | None, *, lines: _Lines | None = None,
                   parts: tuple = ()) -> None:
    """Raise ConfigError at the first credential-looking key or value anywhere in the config
    (with its line when `lines` can find it)."""
    def refuse(message: str, at: tuple, *, key: bool = False) -> ConfigError:
        line = lines.line(list(at), key=key) if lines else None
        return ConfigError(path, message, field=_dotted(list(at)) or None, line=line)

    if isinstance(node, dict):
        for k, v in node.items():
            if _SECRET_NAME.match(str(k)):
                raise refuse("credentials never go in the config (it is copied into "
                             "run.json and the report); set OPENAI_API_KEY or the "
                             "variable your provider reads", (*parts, k), key=True)
            refuse_secrets(v, path, lines=lines, parts=(*parts, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            refuse_secrets(v, path, lines=lines, parts=(*parts, i))
    elif isinstance(node, str) and (why := credential_in(node)):
        raise refuse(f"this value looks like a credential ({why}); "
                     "credentials never go in the config", parts)


def refuse_flag_secrets(values: dict[str, Any]) -> None:
    """Raise ConfigError for a command-line value that holds a credential (--base-url with
    user:password@): flags are recorded in run.json like the config."""
    for name, value in values.items():
        if isinstance(value, str) and (why := credential_in(value)):
            raise ConfigError(None, f"{why} in --{name.replace('_', '-')}; "
                              "put credentials in the environment (OPENAI_API_KEY)",
                              field=name)
