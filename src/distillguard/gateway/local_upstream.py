"""A small OpenAI-compatible model server for tests and `bench gateway`: realistic response
objects, streamed at a chosen token rate or at once, and failures on request.

The model name picks the behaviour, so one server covers every case:
`reasoning` (answers with `reasoning_content` and a `<think>` block), `reasoning-carriers` (also
`reasoning_details`, `thinking`, a thinking content part and log-probabilities whose tokens spell
the `<think>` block), `fail-500` (HTTP 500 with a non-OpenAI body), `fail-json-500` (HTTP 500 with
an OpenAI error), `slow` (answers after 30 s), `cut` (a stream that breaks off mid-way), `long` (a
stream of 5,000 tokens); any other name answers normally.

With `record`, every request it receives is appended to that file as one JSON line (method, path
as received, query string, whether it carried an Authorization header) and every stream's end
(`stream_end`: chunks sent, whether the client went away first): tests read what reached the
upstream.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import msgspec

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

ANSWERS = (
    "A gas meter measures the volume of natural gas that flows into your home, usually in cubic feet "
    "or cubic metres. Your supplier converts that volume into energy units (kilowatt-hours or therms) "
    "using the gas's calorific value, and bills you for the energy.",
    "To reverse a list in Python, use slicing with a negative step: reversed_list = my_list[::-1]. If you "
    "want to reverse it in place, call my_list.reverse(), which returns None and changes the list itself.",
    "Photosynthesis turns light energy into chemical energy. Chlorophyll absorbs light, water is split to "
    "release oxygen, and the energy captured is used to fix carbon dioxide into sugars in the Calvin cycle.",
)
REASONING = (
    "Okay, so the user asks what 17 times 23 is. Let me compute: 17 times 20 is 340, 17 times 3 is 51. "
    "Wait, let me double-check: 340 plus 51 is 391. So the answer is 391."
)
THINK = "Hidden musing about the secret method."  # what the <think> block says
CARRIED = "Carried reasoning: first split the product, then add the partial products."
LONG_TOKENS = 5000

_encode = msgspec.json.Encoder().encode
_ids = itertools.count(1)


def _tokens(text: str) -> list[str]:
    words = text.split(" ")
    return [w if i == 0 else " " + w for i, w in enumerate(words)]


class LocalUpstream:
    """ASGI app. `token_rate` is tokens per second when streaming (0: all at once)."""

    def __init__(self, token_rate: float = 0.0, record: str | None = None, failures: bool = True) -> None:
        self.token_rate = token_rate
        self.calls = 0
        self.record = record
        self.failures = failures  # False: the failure models answer normally (fuzzing sends any name)

    def _note(self, entry: dict[str, Any]) -> None:
        if self.record:
            with open(self.record, "ab") as out:
                out.write(_encode(entry) + b"\n")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.calls += 1
        path = scope["path"]
        headers = dict(scope["headers"])
        self._note(
            {
                "method": scope["method"],
                "path": (scope.get("raw_path") or path.encode()).decode("latin-1"),
                "query": scope.get("query_string", b"").decode("latin-1"),
                "authorization": b"authorization" in headers,
            }
        )
        if path == "/v1/models":
            await self._json(
                send,
                200,
                {"object": "list", "data": [{"id": "frontier-1", "object": "model", "owned_by": "local"}]},
            )
            return
        if path.startswith("/v1/models/"):
            await self._json(
                send, 200, {"id": path.rsplit("/", 1)[1], "object": "model", "owned_by": "local"}
            )
            return
        try:
            request = msgspec.json.decode(body) if body else {}
        except msgspec.DecodeError:
            await self._json(send, 400, _error("We could not parse the JSON body of your request."))
            return
        if not isinstance(request, dict):
            await self._json(send, 400, _error("The body must be a JSON object."))
            return
        raw_model = request.get("model")
        model = raw_model if isinstance(raw_model, str) else "frontier-1"
        if not self.failures and model in ("fail-500", "fail-json-500", "slow", "cut", "long"):
            model = "frontier-1"
        if model == "fail-500":
            await send(
                {"type": "http.response.start", "status": 500, "headers": [(b"content-type", b"text/plain")]}
            )
            await send({"type": "http.response.body", "body": b"Internal Server Error"})
            return
        if model == "fail-json-500":
            await self._json(
                send,
                500,
                {
                    "error": {
                        "message": "The server had an error.",
                        "type": "server_error",
                        "param": None,
                        "code": None,
                    }
                },
            )
            return
        if model == "slow":
            await asyncio.sleep(30)
        answer = ANSWERS[self.calls % len(ANSWERS)]
        reasoning = REASONING if model.startswith("reasoning") else None
        stream = request.get("stream") is True
        if path == "/v1/chat/completions":
            if stream and model == "long":
                await self._long_stream(send, receive)
            elif stream:
                await self._chat_stream(send, model, answer, reasoning, cut=model == "cut")
            elif model == "reasoning-carriers":
                await self._json(send, 200, _carriers(model, answer))
            else:
                await self._json(send, 200, _chat(model, answer, reasoning))
        elif path == "/v1/completions":
            await self._json(send, 200, _completion(model, answer))
        elif path == "/v1/responses":
            if stream:
                await self._responses_stream(send, model, answer, reasoning)
            else:
                await self._json(send, 200, _response(model, answer, reasoning))
        elif path == "/v1/embeddings":
            await self._json(
                send,
                200,
                {
                    "object": "list",
                    "data": [{"object": "embedding", "index": 0, "embedding": [0.01 * i for i in range(16)]}],
                    "model": model,
                    "usage": {"prompt_tokens": 8, "total_tokens": 8},
                },
            )
        else:
            await self._json(send, 404, _error(f"Unknown path {path}."))

    @staticmethod
    async def _json(send: Send, status: int, obj: Any) -> None:
        body = _encode(obj)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def _pace(self) -> None:
        if self.token_rate > 0:
            await asyncio.sleep(1.0 / self.token_rate)

    async def _chat_stream(
        self, send: Send, model: str, answer: str, reasoning: str | None, cut: bool
    ) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream")],
            }
        )
        ident, created = f"chatcmpl-{next(_ids)}", int(time.time())

        def chunk(delta: dict[str, Any] | None, finish: str | None = None, usage: Any = None) -> bytes:
            obj: dict[str, Any] = {
                "id": ident,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
            if usage is not None:
                obj["usage"] = usage
            return b"data: " + _encode(obj) + b"\n\n"

        await send(
            {
                "type": "http.response.body",
                "body": chunk({"role": "assistant", "content": ""}),
                "more_body": True,
            }
        )
        pieces: list[dict[str, Any]] = []
        if reasoning:
            pieces += [{"reasoning_content": t} for t in _tokens(reasoning)]
            # some servers (DeepSeek-R1 via vLLM without a reasoning parser) put it in <think> tags
            pieces += [{"content": t} for t in ["<thi", "nk>", "Hidden", " musing", "</th", "ink>", "\n\n"]]
        pieces += [{"content": t} for t in _tokens(answer)]
        if self.token_rate <= 0:
            body = b"".join(chunk(p) for p in pieces)
            await send({"type": "http.response.body", "body": body, "more_body": True})
        else:
            for i, piece in enumerate(pieces):
                if cut and i == len(pieces) // 2:
                    raise ConnectionAbortedError("local upstream: stream cut on purpose")
                await self._pace()
                await send({"type": "http.response.body", "body": chunk(piece), "more_body": True})
        if cut:
            raise ConnectionAbortedError("local upstream: stream cut on purpose")
        usage = {"prompt_tokens": 12, "completion_tokens": len(pieces), "total_tokens": 12 + len(pieces)}
        tail = chunk({}, "stop") + chunk(None, None, usage)  # usage arrives in a chunk without choices
        await send({"type": "http.response.body", "body": tail + b"data: [DONE]\n\n"})

    async def _long_stream(self, send: Send, receive: Receive) -> None:
        """5,000 paced tokens; stops as soon as the client (the gateway) goes away, and says so."""
        gone = asyncio.Event()

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            gone.set()

        watcher = asyncio.create_task(watch())
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream")],
            }
        )
        sent = 0
        try:
            for i in range(LONG_TOKENS):
                if gone.is_set():
                    break
                chunk = {
                    "id": "chatcmpl-long",
                    "object": "chat.completion.chunk",
                    "created": 0,
                    "model": "long",
                    "choices": [{"index": 0, "delta": {"content": f" w{i}"}, "finish_reason": None}],
                }
                await send(
                    {
                        "type": "http.response.body",
                        "body": b"data: " + _encode(chunk) + b"\n\n",
                        "more_body": True,
                    }
                )
                sent += 1
                await asyncio.sleep(1.0 / self.token_rate if self.token_rate > 0 else 0)
            if not gone.is_set():
                await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})
        finally:
            watcher.cancel()
            self._note({"stream_end": "long", "sent": sent, "client_gone": gone.is_set()})

    async def _responses_stream(self, send: Send, model: str, answer: str, reasoning: str | None) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream")],
            }
        )
        final = _response(model, answer, reasoning)

        def event(obj: dict[str, Any]) -> bytes:
            return b"event: " + obj["type"].encode() + b"\ndata: " + _encode(obj) + b"\n\n"

        out = [
            event({"type": "response.created", "response": {**final, "status": "in_progress", "output": []}})
        ]
        if reasoning:
            item = final["output"][0]
            out.append(
                event(
                    {"type": "response.output_item.added", "output_index": 0, "item": {**item, "content": []}}
                )
            )
            out += [
                event({"type": "response.reasoning_text.delta", "output_index": 0, "delta": t})
                for t in _tokens(reasoning)
            ]
            out.append(event({"type": "response.output_item.done", "output_index": 0, "item": item}))
        out += [event({"type": "response.output_text.delta", "delta": t}) for t in _tokens(answer)]
        out.append(event({"type": "response.completed", "response": final}))
        for piece in out:
            await self._pace()
            await send({"type": "http.response.body", "body": piece, "more_body": True})
        await send({"type": "http.response.body", "body": b""})


def _error(message: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": None}}


def _usage(answer: str) -> dict[str, int]:
    n = len(answer.split())
    return {"prompt_tokens": 12, "completion_tokens": n, "total_tokens": 12 + n}


def _chat(model: str, answer: str, reasoning: str | None) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": answer}
    if reasoning:
        message["reasoning_content"] = reasoning
        message["content"] = "<think>Hidden musing.</think>\n\n" + answer
    return {
        "id": f"chatcmpl-{next(_ids)}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": "stop", "logprobs": None}],
        "usage": _usage(answer),
    }


def _logprob_tokens(tokens: list[str]) -> list[dict[str, Any]]:
    return [
        {
            "token": t,
            "logprob": -0.5,
            "bytes": list(t.encode()),
            "top_logprobs": [{"token": t, "logprob": -0.5}],
        }
        for t in tokens
    ]


def _carriers(model: str, answer: str) -> dict[str, Any]:
    """Reasoning in every place a server has been seen to put it."""
    content = f"<think>{THINK}</think>\n\n{answer}"
    message: dict[str, Any] = {
        "role": "assistant",
        "content": content,
        "reasoning_content": REASONING,
        "reasoning_details": [{"type": "reasoning.text", "text": CARRIED}],
        "thinking": CARRIED,
        "provider_specific_fields": {"raw_trace": REASONING},
    }
    return {
        "id": f"chatcmpl-{next(_ids)}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": "stop",
                "logprobs": {
                    "content": _logprob_tokens(
                        ["<think>", *_tokens(THINK), "</think>", "\n\n", *_tokens(answer)]
                    )
                },
            }
        ],
        "usage": _usage(answer),
    }


def _completion(model: str, answer: str) -> dict[str, Any]:
    return {
        "id": f"cmpl-{next(_ids)}",
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "text": answer, "finish_reason": "stop", "logprobs": None}],
        "usage": _usage(answer),
    }


def _response(model: str, answer: str, reasoning: str | None) -> dict[str, Any]:
    output: list[dict[str, Any]] = []
    if reasoning:
        output.append(
            {
                "type": "reasoning",
                "id": "rs_1",
                "summary": [{"type": "summary_text", "text": "Multiplied 17 by 23."}],
                "content": [{"type": "reasoning_text", "text": reasoning}],
                # what OpenAI returns with include ["reasoning.encrypted_content"]; here the trace
                # itself, so that a leak of it is visible
                "encrypted_content": "enc:" + reasoning,
            }
        )
    output.append(
        {
            "type": "message",
            "id": "msg_1",
            "role": "assistant",
            "status": "completed",
            "content": [{"type": "output_text", "text": answer, "annotations": []}],
        }
    )
    n = len(answer.split())
    return {
        "id": f"resp_{next(_ids)}",
        "object": "response",
        "created_at": int(time.time()),
        "status": "completed",
        "model": model,
        "output": output,
        "usage": {"input_tokens": 12, "output_tokens": n, "total_tokens": 12 + n},
    }


def main() -> None:
    """`python -m distillguard.gateway.local_upstream --port 9000 [--token-rate 50]`"""
    import argparse

    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--token-rate", type=float, default=0.0, help="tokens/s when streaming; 0 = at once")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--record", default=None, help="append each request received to this JSONL file")
    args = parser.parse_args()
    uvicorn.run(
        LocalUpstream(args.token_rate, args.record),
        host=args.host,
        port=args.port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
