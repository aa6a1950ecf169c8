"""A fast OpenAI-compatible chat server for the speed benchmarks, in its own process.

The test suite's server (tests/openai_server.py) is a thread per connection under the GIL: at
C = 32 it, not the client, sets the pace. This one is a single aiohttp event loop that answers
every chat completion after exactly `latency_s` with a small fixed answer and usage, so the
client being measured is what moves the figures. It counts the chat requests it served, and
when armed with a tag it says when the first request to that tag's base URL arrived (its
`time.monotonic()` as its handler starts, before the body is read), so a start-up benchmark
needs no polling loop of its own, and a request still in flight from an earlier, killed
client (another tag) is never taken for the next one's.

    with FastServer(latency_s=0.05) as server:
        server.base_url; server.chat_calls()
        url = server.arm("run-1"); ...; arrived_at = server.arrival(alive=lambda: True)
"""

from __future__ import annotations

import select
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from loopback import ChildServer  # noqa: E402

_CHILD = r"""
import asyncio, json, sys, time
from aiohttp import web

LATENCY = float(sys.argv[1])
served = 0
armed = None  # "arm TAG": report the first chat request to /TAG/v1 when it arrives
ANSWER = json.dumps({
    "id": "chatcmpl-bench", "object": "chat.completion", "created": 0, "model": "gpt-4o-mini",
    "choices": [{"index": 0, "finish_reason": "stop",
                 "message": {"role": "assistant", "content": "intent_00"}}],
    "usage": {"prompt_tokens": 120, "completion_tokens": 2, "total_tokens": 122,
              "prompt_tokens_details": {"cached_tokens": 0}}}).encode()

async def chat(request):
    global served, armed
    if armed is not None and request.match_info.get("tag") == armed:
        armed = None
        print(json.dumps({"arrived_at": time.monotonic()}), flush=True)
    await request.read()
    if LATENCY:
        await asyncio.sleep(LATENCY)
    served += 1
    return web.Response(body=ANSWER, content_type="application/json")

async def main():
    global armed
    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_post("/{tag}/v1/chat/completions", chat)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=2048)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    print(json.dumps({"base_url": f"http://127.0.0.1:{port}/v1"}), flush=True)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():  # "count" -> requests served; EOF stops
        if line.strip() == b"count":
            print(json.dumps({"chat_calls": served}), flush=True)
        elif line.startswith(b"arm "):
            armed = line.split()[1].decode()
            print(json.dumps({"armed": True}), flush=True)
    await runner.cleanup()

asyncio.run(main())
"""


class FastServer(ChildServer):
    """The aiohttp chat server above in a child process, answering after `latency_s`."""

    name = "fast server"

    def code(self) -> list[str]:
        return [_CHILD, str(self.latency_s)]

    def arm(self, tag: str) -> str:
        """Have the server report the arrival of the first chat request to the base URL
        returned (this server under /TAG); see `arrival`."""
        self._ask(f"arm {tag}")
        return self.base_url.removesuffix("/v1") + f"/{tag}/v1"

    def arrival(self, *, alive: Callable[[], bool], timeout_s: float = 120.0) -> float:
        """The server's `time.monotonic()` when the armed tag's first request arrived.

        Waits on the server's pipe (no busy polling to take CPU from the process being
        measured), checking `alive()` every 50 ms so a client that dies is an error, not a
        hang. CLOCK_MONOTONIC is one clock for every process on Linux, so the figure can be
        compared with the caller's own `time.monotonic()`."""
        assert self._proc is not None and self._proc.stdout
        deadline = time.monotonic() + timeout_s
        while not select.select([self._proc.stdout], [], [], 0.05)[0]:
            if not alive():
                raise RuntimeError("the client exited before its first request")
            if time.monotonic() > deadline:
                raise TimeoutError(f"no request within {timeout_s:g} s")
        return float(self._ask(None)["arrived_at"])
