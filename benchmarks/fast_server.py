"""A fast OpenAI-compatible chat server for the speed benchmarks, in its own process.

The test suite's server (tests/openai_server.py) is a thread per connection under the GIL: at
C = 32 it, not the client, sets the pace. This one is a single aiohttp event loop that answers
every chat completion after exactly `latency_s` with a small fixed answer and usage, so the
client being measured is what moves the figures. It counts the chat requests it served.

    with FastServer(latency_s=0.05) as server:
        server.base_url; server.chat_calls()
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from loopback import ChildServer  # noqa: E402

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


class FastServer(ChildServer):
    """The aiohttp chat server above in a child process, answering after `latency_s`."""

    name = "fast server"

    def code(self) -> list[str]:
        return [_CHILD, str(self.latency_s)]
