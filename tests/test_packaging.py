"""Packaging: the distribution's name and metadata, built by the real build backend offline."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from evalkit import DISTRIBUTION, __version__
from evalkit.cli import main

ROOT = Path(__file__).parent.parent


def test_metadata_builds_without_deprecation_warnings(tmp_path):
    """`pip install` prints whatever the backend warns; a user should see none of ours (the
    old `license = {text = ...}` table printed a deprecation three times per install)."""
    code = ("import sys; from setuptools import build_meta; "
            "print(build_meta.prepare_metadata_for_build_wheel(sys.argv[1]))")
    out = subprocess.run([sys.executable, "-W", "default", "-c", code, str(tmp_path)],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "deprecat" not in (out.stdout + out.stderr).lower(), out.stderr
    meta = (tmp_path / out.stdout.strip().splitlines()[-1] / "METADATA").read_text()
    assert f"Name: {DISTRIBUTION}\n" in meta and "License-Expression: MIT\n" in meta
    assert f"Version: {__version__}\n" in meta  # what `evalkit --version` says
    assert DISTRIBUTION != "evalkit"  # that name on the index is an unrelated project


def test_version_names_the_installed_distribution():
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0, result.output
    assert __version__ in result.output
