"""Diagnostic (not part of `make bench`): the client CPU one chat call costs, layer by layer.

Sends the same prompt-only chat to the loopback server at L = 0 with C = 64 concurrent tasks,
four ways, and prints the client's CPU time and the wall time per call:
1. `AsyncOpenAI.chat.completions.create` — what the openai provider calls;
2. `AsyncOpenAI.post("/chat/completions", cast_to=ChatCompletion)` — the same request without
   `create`'s parameter transform (note: without `create`'s request options either);
3. the same returning the raw response, parsed with `json.loads` — no pydantic models;
4. the SDK's HTTP client (httpx2) alone, 64 pooled connections — no SDK at all.
It bounds what any change to the provider could win: the harness adds its share on top of (1).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from loopback import LoopbackServer  # noqa: E402

N, C = 1_536, 64
LABELS = "\n".join(f"- intent_{i:02d}: description of intent_{i:02d}" for i in range(14))
MESSAGES = [{"role": "system", "content": f"Classify the message.\n\n{LABELS}"},
            {"role": "user", "content": "refund invoice login export sso token charge plan"}]
BODY = {"model": "gpt-4o-mini", "messages": MESSAGES, "temperature": 0.0, "seed": 0}


async def per_call(name: str, call) -> None:
    async def worker(n: int) -> None:
        for _ in range(n):
            await call()

    await asyncio.gather(*(worker(2) for _ in range(C)))  # warm: connections open
    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker(N // C) for _ in range(C)))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    print(f"{name:<44} client CPU {1000 * cpu / N:.2f} ms/call, wall {1000 * wall / N:.2f} "
          f"ms/call")


async def main(base_url: str) -> None:
    import httpx2
    from openai import AsyncOpenAI
    from openai.types.chat import ChatCompletion

    client = AsyncOpenAI(api_key="not-needed", base_url=base_url)
    await per_call("1. SDK chat.completions.create", lambda: client.chat.completions.create(**BODY))
    await per_call("2. SDK post, cast to ChatCompletion",
                   lambda: client.post("/chat/completions", body=BODY, cast_to=ChatCompletion))

    async def raw() -> dict:
        response = await client.post("/chat/completions", body=BODY, cast_to=httpx2.Response)
        return json.loads(response.content)

    await per_call("3. SDK post, raw response + json.loads", raw)
    await client.close()
    http = httpx2.AsyncClient(limits=httpx2.Limits(max_connections=C,
                                                   max_keepalive_connections=C))

    async def plain() -> dict:
        response = await http.post(f"{base_url}/chat/completions", json=BODY)
        return json.loads(response.content)

    await per_call("4. httpx2 alone", plain)
    await http.aclose()


if __name__ == "__main__":
    with LoopbackServer(latency_s=0.0) as server:
        asyncio.run(main(server.base_url))
