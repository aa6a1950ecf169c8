"""Names that become folder or file names, and the folders writes must stay inside.

A test set's name, a run id given to --resume and a fine-tune name all come from data or
flags and end up as path components (`reports/<stamp>-<name>`, `latest-<name>`,
`finetunes/<name>.json`). One plain component each — letters, digits, '.', '_', '-', no '/'
and no '..' — so no input can steer a write outside --reports-dir, --cache-dir or
--finetune-dir; `inside` is the second line of defence at the point of writing.
"""

from __future__ import annotations

import re
from pathlib import Path

SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,119}")
SAFE_NAME_RULE = ("letters, digits, '.', '_' and '-', starting with a letter or digit; "
                  "no '/' or '..'")


class PathEscape(ValueError):
    """A path built from data or flags would leave the folder it belongs in."""


def is_safe_name(name: object) -> bool:
    """True for a string usable as one plain path component (see SAFE_NAME)."""
    return isinstance(name, str) and SAFE_NAME.fullmatch(name) is not None and ".." not in name


def check_name(name: object, *, what: str) -> str:
    """`name` itself if it is a safe path component, else a PathEscape saying what it names."""
    if not is_safe_name(name):
        raise PathEscape(f"{what} {name!r} must be a plain name ({SAFE_NAME_RULE})")
    return str(name)


def inside(root: Path | str, path: Path | str, *, what: str) -> Path:
    """`path`, refused unless it resolves (symlinks followed) to `root` or below it."""
    root_resolved, resolved = Path(root).resolve(), Path(path).resolve()
    if resolved != root_resolved and root_resolved not in resolved.parents:
        raise PathEscape(f"{what} {path} is outside {root}; refusing to write there")
    return Path(path)
