"""The experiment config file (YAML): one mapping with a section per concern.

Sections and who reads them: `economics` (evalkit.economics), `gate` (evalkit.gate),
`pricing` (evalkit.pricing), `provider` (provider options such as base_url, model). This module
only loads the file and hands out sections; each consumer validates its own section and names
the file and field in its errors through `ConfigError`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

KNOWN_SECTIONS = ("economics", "gate", "pricing", "provider", "judge")


class ConfigError(ValueError):
    """A problem in the experiment config, located by file and field."""

    def __init__(self, path: Path | str | None, message: str, *, field: str | None = None):
        self.path, self.field = (str(path) if path else "<config>"), field
        super().__init__(f"{self.path}:{f' field {field!r}:' if field else ''} {message}")


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
    return ExperimentConfig(path, raw)
