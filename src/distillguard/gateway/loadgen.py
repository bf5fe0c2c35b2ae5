"""Closed-loop HTTP load for `bench gateway`, run as its own process so the load generator and the
server under test do not share an interpreter: N connections, each sending the next request as
soon as the previous answer arrived. Prints one JSON object (latency percentiles, requests/s).

`python -m distillguard.gateway.loadgen --url http://127.0.0.1:8080/v1/chat/completions --key K
 --concurrency 32 --seconds 5`
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import aiohttp

BODY = {
    "model": "frontier-1",
    "messages": [
        {"role": "system", "content": "You are a helpful assistant."},
        {
            "role": "user",
            "content": "What does my gas meter measure, and how does my supplier turn it into a bill?",
        },
    ],
    "temperature": 0.7,
}


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


async def run(
    url: str,
    key: str | None,
    concurrency: int,
    requests: int,
    seconds: float,
    warmup: int,
    stream: bool = False,
) -> dict:
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    payload = json.dumps({**BODY, "stream": True} if stream else BODY).encode()
    latencies: list[float] = []
    first_tokens: list[float] = []
    errors: dict[str, int] = {}
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(record: bool) -> None:
            started = time.perf_counter()
            try:
                async with session.post(url, data=payload, headers=headers) as response:
                    status = response.status
                    if stream:
                        first = None
                        async for chunk in response.content.iter_any():
                            # the first event with answer text (not the empty role chunk)
                            if first is None and b'"content":"' in chunk.replace(b'"content":""', b""):
                                first = time.perf_counter() - started
                        if record and first is not None and status == 200:
                            first_tokens.append(first * 1000)
                    else:
                        await response.read()
            except aiohttp.ClientError as error:
                errors[type(error).__name__] = errors.get(type(error).__name__, 0) + 1
                return
            if status != 200:
                errors[str(status)] = errors.get(str(status), 0) + 1
                return
            if record:
                latencies.append((time.perf_counter() - started) * 1000)

        for _ in range(warmup):
            await one(False)
        deadline = time.perf_counter() + seconds if seconds else None
        budget = [requests]

        async def worker() -> None:
            while True:
                if deadline is not None and time.perf_counter() >= deadline:
                    return
                if deadline is None:
                    if budget[0] <= 0:
                        return
                    budget[0] -= 1
                await one(True)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    first_tokens.sort()
    return {
        "concurrency": concurrency,
        "completed": len(latencies),
        "errors": errors,
        "seconds": round(elapsed, 3),
        "rps": round(len(latencies) / elapsed, 1) if elapsed else None,
        "p50_ms": round(percentile(latencies, 0.50), 3),
        "p99_ms": round(percentile(latencies, 0.99), 3),
        "mean_ms": round(sum(latencies) / len(latencies), 3) if latencies else None,
        "first_token_p50_ms": round(percentile(first_tokens, 0.50), 3) if stream else None,
        "first_token_p99_ms": round(percentile(first_tokens, 0.99), 3) if stream else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--key", default=None)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--requests", type=int, default=1000, help="total requests (when --seconds is 0)")
    parser.add_argument("--seconds", type=float, default=0.0, help="run for this long instead of --requests")
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--stream", action="store_true", help="stream and measure time to the first token")
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # uvloop is a dependency via uvicorn[standard]; plain asyncio still works
        pass
    result = asyncio.run(
        run(args.url, args.key, args.concurrency, args.requests, args.seconds, args.warmup, args.stream)
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
