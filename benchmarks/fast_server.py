"""A fast OpenAI-compatible chat server for the speed benchmarks, in its own process.

The test suite's server (tests/openai_server.py) is a thread per connection under the GIL: at
C = 32 it, not the client, sets the pace. This one is a single aiohttp event loop that answers
every chat completion after exactly `latency_s` with a small fixed answer and usage, so the
client being measured is what moves the figures. It counts the chat requests it served.

    with FastServer(latency_s=0.05) as server:
        server.base_url; server.chat_calls()
"""

from __future__ import annotations

import json
import subprocess
import sys

_CHILD = r"""
import asyncio, json, sys
from aiohttp import web

LATENCY = float(sys.argv[1])
served = 0
ANSWER = json.dumps({
    "id": "chatcmpl-bench", "object": "chat.completion", "created": 0, "model": "gpt-4o-mini",
    "choices": [{"index": 0, "finish_reason": "stop",
                 "message": {"role": "assistant", "content": "intent_00"}}],
    "usage": {"prompt_tokens": 120, "completion_tokens": 2, "total_tokens": 122,
              "prompt_tokens_details": {"cached_tokens": 0}}}).encode()

async def chat(request):
    global served
    await request.read()
    if LATENCY:
        await asyncio.sleep(LATENCY)
    served += 1
    return web.Response(body=ANSWER, content_type="application/json")

async def main():
    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
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
    await runner.cleanup()

asyncio.run(main())
"""


class FastServer:
    """The aiohttp chat server above in a child process, answering after `latency_s`."""

    def __init__(self, *, latency_s: float):
        self.latency_s = latency_s
        self._proc: subprocess.Popen[str] | None = None
        self.base_url = ""

    def __enter__(self) -> FastServer:
        self._proc = subprocess.Popen([sys.executable, "-c", _CHILD, str(self.latency_s)],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.base_url = self._ask(None)["base_url"]
        return self

    def chat_calls(self) -> int:
        return int(self._ask("count")["chat_calls"])

    def _ask(self, command: str | None) -> dict:
        assert self._proc is not None and self._proc.stdin and self._proc.stdout
        if command is not None:
            self._proc.stdin.write(command + "\n")
            self._proc.stdin.flush()
        line = self._proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the fast server exited (code {self._proc.poll()})")
        return json.loads(line)

    def __exit__(self, *exc) -> None:
        assert self._proc is not None and self._proc.stdin
        self._proc.stdin.close()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
