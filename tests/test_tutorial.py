"""docs/tutorial-intent.md cannot rot: every shell block on the page runs, in order, as a
reader would paste it (bash, in a scratch folder laid out like a clone), and the lines that
carry its claims (recommendations, step verdicts, check's verdict, what init and register
wrote) must be printed exactly as the page shows them.

Three kinds of block are not run, by declaration: `pip install` (it installs from the package
index; the test runs this checkout), and the two that start a server (`vllm serve`, and
`tests/openai_server.py`, the stand-in the page offers): the test starts that same loopback
stand-in itself on a free port of 127.0.0.1 and puts its URL where the page says
http://127.0.0.1:8000/v1. No key is set, as the page says a local server needs none."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from openai_server import FakeOpenAI

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "tutorial-intent.md"
PAGE_URL = "http://127.0.0.1:8000/v1"
NOT_RUN = ("pip install ", "vllm serve ", "tests/openai_server.py")  # see the docstring
BLOCK = re.compile(r"```sh\n(.*?)```\n(?:```text\n(.*?)```\n)?", re.S)
# the lines a reader acts on; timings, run ids and latency columns vary from run to run
CLAIMS = re.compile(r"^(Ship |ok: |refused |run would refuse|wrote |next: |total to spend|"
                    r"intents-openai: succeeded|type: |items: |labels: )|→")


def blocks(text: str) -> list[tuple[str, str]]:
    """(commands, the output the page shows for them or '') for each ```sh block."""
    return [(m.group(1), m.group(2) or "") for m in BLOCK.finditer(text)]


def _runnable(commands: str) -> bool:
    return not any(commands.lstrip().startswith(x) or x in commands.split("\n", 1)[0]
                   for x in NOT_RUN)


def _scratch(tmp: Path) -> dict[str, str]:
    """A folder laid out like a clone (testsets/support-intents), `evalkit` and `python3`
    on PATH running this checkout, and no key or base URL from the caller's shell."""
    (tmp / "testsets").mkdir()
    (tmp / "testsets" / "support-intents").symlink_to(ROOT / "testsets" / "support-intents")
    bin_dir = tmp / "bin"
    bin_dir.mkdir()
    (bin_dir / "evalkit").write_text(
        f"#!/bin/sh\nexec {sys.executable} -c 'import sys; sys.argv[0] = \"evalkit\"; "
        f"from evalkit.cli import main; main()' \"$@\"\n")
    (bin_dir / "python3").write_text(f"#!/bin/sh\nexec {sys.executable} \"$@\"\n")
    for shim in bin_dir.iterdir():
        shim.chmod(0o755)
    env = {k: v for k, v in os.environ.items()
           if k not in ("OPENAI_API_KEY", "OPENAI_BASE_URL")}
    return {**env, "PATH": f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
            "PYTHONPATH": str(ROOT), "COLUMNS": "200"}


def run_page(tmp: Path, base_url: str) -> list[tuple[str, str, str]]:
    """Run every runnable block in `tmp`; (commands, page output, actual output) each."""
    env = _scratch(tmp)
    done = []
    for commands, shown in blocks(PAGE.read_text()):
        if not _runnable(commands):
            continue
        ran = subprocess.run(["bash", "-e", "-c", commands.replace(PAGE_URL, base_url)],
                             cwd=tmp, env=env, input="y\n", capture_output=True, text=True,
                             timeout=900)
        out = ran.stdout + ran.stderr
        assert ran.returncode == 0, f"$ {commands}\n{out}"
        done.append((commands, shown, out))
    return done


def test_every_command_on_the_tutorial_page_runs_and_says_what_the_page_says(tmp_path):
    page = blocks(PAGE.read_text())
    skipped = [c for c, _ in page if not _runnable(c)]
    assert len(skipped) == 3, skipped  # pip install, vllm serve, the stand-in: no others
    with FakeOpenAI() as server:
        done = run_page(tmp_path, server.base_url)
        assert server.chat_calls(), "the OpenAI-compatible half never reached the server"
        assert not server.chat_calls(status=401)
    assert len(done) == len(page) - len(skipped)
    for commands, shown, out in done:
        claims = [line for line in shown.splitlines() if CLAIMS.search(line)]
        missing = [line for line in claims if line not in out]
        assert not missing, f"$ {commands}\nthe page says:\n" + "\n".join(missing) + \
            f"\nthe command printed:\n{out}"
    # both halves end in a recommendation, and the page shows each one
    last_local = next(out for c, _, out in done if c.startswith("cat > exp.yaml"))
    last_server = done[-1][2]
    for out in (last_local, last_server):
        sentence = next(line for line in out.splitlines() if line.startswith("Ship "))
        assert sentence in PAGE.read_text()
