"""The experiment config file (YAML): one mapping with a section per concern.

Sections and who reads them: `economics` (evalkit.analysis.economics), `gate`
(evalkit.gate.check), `pricing` (evalkit.providers.pricing), `provider` (provider options such as
base_url, model). This module only loads the file and hands out sections; each consumer
validates its own section and names the file and field in its errors through `ConfigError`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from evalkit.secrets import credential_in

KNOWN_SECTIONS = ("economics", "gate", "pricing", "provider", "judge", "compare")


class ConfigError(ValueError):
    """A problem in the experiment config, located by file, line (found from the field, so no
    caller has to carry YAML marks) and field."""

    def __init__(self, path: Path | str | None, message: str, *, field: str | None = None):
        self.path, self.field = (str(path) if path else "<config>"), field
        self.line = line_of(path, field) if path and field else None
        where = f"{self.path}:{self.line}:" if self.line else f"{self.path}:"
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
class ExperimentConfig:
    path: Path | None = None
    sections: dict[str, Any] = field(default_factory=dict)

    def section(self, name: str) -> dict[str, Any]:
        value = self.sections.get(name) or {}
        if not isinstance(value, dict):
            raise ConfigError(self.path, "must be a mapping", field=name)
        return value


def load_config(path: Path | str | None) -> ExperimentConfig:
    """Load an experiment config; None gives the empty config (all defaults)."""
    if path is None:
        return ExperimentConfig()
    path = Path(path)
    if not path.is_file():
        raise ConfigError(path, "config file not found")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(path, f"invalid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(path, "the config must be a mapping of sections")
    unknown = sorted(set(raw) - set(KNOWN_SECTIONS))
    if unknown:
        raise ConfigError(path, f"unknown section(s); known: {', '.join(KNOWN_SECTIONS)}",
                          field=unknown[0])
    refuse_secrets(raw, path)
    return ExperimentConfig(path, raw)


# Names that hold credentials. The config is copied into run.json and the HTML report, so a
# key written here would reach disk and every reader of a CI artifact.
_SECRET_NAME = re.compile(r"^(\w+[_-])?(api[_-]?key|key|secret|token|bearer|password|passwd|"
                          r"authorization|credentials?)$", re.IGNORECASE)


def refuse_secrets(node: Any, path: Path | None, where: str = "") -> None:
    """Raise ConfigError at the first credential-looking key or value anywhere in the config."""
    if isinstance(node, dict):
        for k, v in node.items():
            field_name = f"{where}.{k}" if where else str(k)
            if _SECRET_NAME.match(str(k)):
                raise ConfigError(path, "credentials never go in the config (it is copied into "
                                  "run.json and the report); set OPENAI_API_KEY or the "
                                  "variable your provider reads", field=field_name)
            refuse_secrets(v, path, field_name)
    elif isinstance(node, list):
        for i, v in enumerate(node):
            refuse_secrets(v, path, f"{where}[{i}]")
    elif isinstance(node, str) and (why := credential_in(node)):
        raise ConfigError(path, f"this value looks like a credential ({why}); "
                          "credentials never go in the config", field=where)


def refuse_flag_secrets(values: dict[str, Any]) -> None:
    """Raise ConfigError for a command-line value that holds a credential (--base-url with
    user:password@): flags are recorded in run.json like the config."""
    for name, value in values.items():
        if isinstance(value, str) and (why := credential_in(value)):
            raise ConfigError(None, f"{why} in --{name.replace('_', '-')}; "
                              "put credentials in the environment (OPENAI_API_KEY)",
                              field=name)
