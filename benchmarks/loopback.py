"""The test suite's OpenAI-compatible server (tests/openai_server.py), in its own process.

A benchmark must not let the "model" share the harness's interpreter: the server's threads would
take the GIL from the event loop being measured. So the server runs in a child process, and
every chat answer waits exactly `latency_s` before it is sent (its `slow` option with an empty
needle, which every message contains). The parent talks to it over 127.0.0.1 only.

    with LoopbackServer(latency_s=0.05) as server:
        server.base_url; server.chat_calls()
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

_CHILD = """
import json, sys
from http.server import ThreadingHTTPServer
sys.path.insert(0, {root!r})
from tests.openai_server import FakeOpenAI
# a listen backlog of 5 (socketserver's default) drops SYNs when 64 clients connect at once,
# and each dropped SYN costs the client a 1 s retransmit; real servers use 2048
ThreadingHTTPServer.request_queue_size = 1024
with FakeOpenAI(slow={{"": {latency!r}}}, cached_prompts=False) as server:
    print(json.dumps({{"base_url": server.base_url}}), flush=True)
    for line in sys.stdin:  # one command a line: "count" -> chat calls seen so far; EOF stops
        if line.strip() == "count":
            print(json.dumps({{"chat_calls": len(server.chat_calls())}}), flush=True)
"""


class ChildServer:
    """A chat server in a child process that prints its base URL, answers "count" on stdin
    with the chat requests it has served, and stops at EOF. Subclasses give `code()`."""

    name = "server"

    def __init__(self, *, latency_s: float):
        self.latency_s = latency_s
        self._proc: subprocess.Popen[str] | None = None
        self.base_url = ""

    def code(self) -> list[str]:
        """The child's `python -c` program and its arguments."""
        raise NotImplementedError

    def __enter__(self):
        self._proc = subprocess.Popen([sys.executable, "-c", *self.code()],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.base_url = self._ask(None)["base_url"]
        return self

    def chat_calls(self) -> int:
        """Chat requests the server has received so far."""
        return int(self._ask("count")["chat_calls"])

    def _ask(self, command: str | None) -> dict:
        assert self._proc is not None and self._proc.stdin and self._proc.stdout
        if command is not None:
            self._proc.stdin.write(command + "\n")
            self._proc.stdin.flush()
        line = self._proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the {self.name} exited (code {self._proc.poll()})")
        return json.loads(line)

    def __exit__(self, *exc) -> None:
        assert self._proc is not None
        if self._proc.stdin:
            self._proc.stdin.close()  # EOF: the child shuts down
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


class LoopbackServer(ChildServer):
    """A FakeOpenAI in a child process with a fixed response latency."""

    name = "loopback server"

    def code(self) -> list[str]:
        return [_CHILD.format(root=str(ROOT), latency=float(self.latency_s))]
