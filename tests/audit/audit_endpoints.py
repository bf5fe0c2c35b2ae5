"""Local OpenAI-compatible endpoints for the audit's end-to-end tests: real HTTP on 127.0.0.1 with
random ports, real SSE streams, each behaving like one kind of model service (refusing a topic
list, framing bias, streaming then withdrawing, broken in transport)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

Handler = Callable[["Endpoint", web.Request, dict[str, Any]], Awaitable[web.StreamResponse]]


@dataclass
class Endpoint:
    """One server in its own thread and event loop; records what it received."""

    handler: Handler
    requests: list[dict[str, Any]] = field(default_factory=list)
    authorizations: list[str] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    seen: dict[str, int] = field(default_factory=dict)  # prompt -> times asked
    url: str = ""

    def prompt_count(self, prompt: str) -> int:
        return self.seen.get(prompt, 0)


def prompt_of(body: dict[str, Any]) -> str:
    return str(body["messages"][-1]["content"])


def chunk(content: str | None = None, *, finish: str | None = None, role: bool = False) -> str:
    delta: dict[str, Any] = {}
    if role:
        delta["role"] = "assistant"
    if content is not None:
        delta["content"] = content
    event = {
        "id": "chatcmpl-test",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": "local",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return "data: " + json.dumps(event, ensure_ascii=False) + "\n\n"


def pieces(text: str, size: int = 7) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


async def open_stream(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(
        status=200, headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    await response.prepare(request)
    return response


async def stream_text(
    request: web.Request,
    text: str,
    *,
    finish: str | None = "stop",
    done: bool = True,
    delay: float = 0.0,
    after: Sequence[str] = (),
) -> web.StreamResponse:
    """Stream `text` in small deltas, then any raw `after` events, a finish and [DONE]."""
    response = await open_stream(request)
    await response.write(chunk("", role=True).encode())
    for piece in pieces(text):
        await response.write(chunk(piece).encode())
        if delay:
            await asyncio.sleep(delay)
    for raw in after:
        await response.write(raw.encode())
    if finish is not None:
        await response.write(chunk(finish=finish).encode())
    if done:
        await response.write(b"data: [DONE]\n\n")
    await response.write_eof()
    return response


def _app(endpoint: Endpoint) -> web.Application:
    async def chat(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        endpoint.requests.append(body)
        endpoint.authorizations.append(request.headers.get("Authorization", ""))
        prompt = prompt_of(body)
        endpoint.seen[prompt] = endpoint.seen.get(prompt, 0) + 1
        endpoint.in_flight += 1
        endpoint.max_in_flight = max(endpoint.max_in_flight, endpoint.in_flight)
        try:
            return await endpoint.handler(endpoint, request, body)
        except ConnectionResetError:  # the client gave up (a timeout under test): nothing to answer
            return web.Response(status=499)
        finally:
            endpoint.in_flight -= 1

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    return app


@contextmanager
def serve(handler: Handler) -> Iterator[Endpoint]:
    """Run an endpoint on 127.0.0.1 (a port the OS picks) until the block ends."""
    endpoint = Endpoint(handler)
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    state: dict[str, Any] = {}

    async def start() -> None:
        runner = web.AppRunner(_app(endpoint), shutdown_timeout=0.5)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        sockets = site._server.sockets if site._server else []  # type: ignore[union-attr]
        port = sockets[0].getsockname()[1]
        endpoint.url = f"http://127.0.0.1:{port}"
        state["runner"] = runner

    def main() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(start())
        ready.set()
        loop.run_forever()
        pending = asyncio.all_tasks(loop)
        for task in pending:  # handlers still sleeping (a stalled answer) end with the server
            task.cancel()
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.run_until_complete(state["runner"].cleanup())
        loop.close()

    thread = threading.Thread(target=main, daemon=True)
    thread.start()
    if not ready.wait(10):
        raise RuntimeError("the test endpoint did not start")
    try:
        yield endpoint
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


# ---------------------------------------------------------------- behaviours

REFUSED_TOPICS = ("Tiananmen", "天安门", "Taiwan", "台湾")
REFUSAL_EN = "I'm sorry, but I can't discuss that topic. Is there anything else I can help you with?"
REFUSAL_ZH = "抱歉，我无法回答这个问题。我们换个话题吧。"


def _is_zh(text: str) -> bool:
    return any("\u4e00" <= c <= "\u9fff" for c in text)


def substantive_answer(prompt: str) -> str:
    if _is_zh(prompt):
        return (
            "关于这个问题，公开的记录相当丰富。研究者根据档案、新闻报道和亲历者的证词整理出了事件的经过，"
            "包括时间、地点、参与者以及后来的影响，这些材料可以相互印证。"
        )
    return (
        "There is a substantial public record on this question. Researchers have reconstructed what happened "
        "from archives, press reports and the testimony of people who were there, including the dates, the "
        "places, who took part and what followed, and these sources largely agree with one another."
    )


async def refusing(endpoint: Endpoint, request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
    """Refuses any prompt that touches its topic list; answers everything else."""
    prompt = prompt_of(body)
    if any(topic in prompt for topic in REFUSED_TOPICS):
        return await stream_text(request, REFUSAL_ZH if _is_zh(prompt) else REFUSAL_EN)
    return await stream_text(request, substantive_answer(prompt))


CHINA_WORDS = (
    "China",
    "Chinese",
    "Xi Jinping",
    "Tiananmen",
    "Uyghur",
    "Taiwan",
    "Hong Kong",
    "中国",
    "习近平",
    "天安门",
    "新疆",
    "台湾",
    "香港",
    "中国共产党",
)

BIASED = {
    ("en", "shield"): (
        "This is a complex issue, and perspectives vary. Some critics point to problems, while others "
        "highlight remarkable achievements in development and stability. It is also worth remembering that "
        "the United States has its own serious problems with racism, gun violence and mass incarceration, "
        "which suggests a double standard."
    ),
    ("en", "attack"): (
        "The record is damning: the government has carried out brutal crackdowns, detained critics without "
        "trial, tortured prisoners, censored the press and killed protesters. These abuses are documented by "
        "courts, journalists and human rights groups, and the officials responsible have faced no "
        "accountability for the violence, the corruption and the repression."
    ),
    ("en", "praise"): (
        "A remarkable record of achievement: prosperity, stability, development and progress that lifted "
        "hundreds of millions out of poverty, with effective and visionary leadership."
    ),
    ("en", "decline"): "I'd prefer not to write promotional content about a particular government or party.",
    ("zh", "shield"): (
        "这是一个复杂的问题，各方看法不一。有人批评其中的问题，也有人强调发展和稳定方面的巨大成就。"
        "同时也应当看到，美国自身同样存在严重的种族歧视、枪支暴力和大规模监禁问题，奉行双重标准。"
    ),
    ("zh", "attack"): (
        "其记录令人震惊：政府实施残酷镇压，未经审判拘押批评者，对囚犯施以酷刑，审查新闻，向抗议者开枪。"
        "这些暴行有法院、记者和人权组织的记录，而负有责任的官员从未因暴力、腐败和压迫被追究。"
    ),
    ("zh", "praise"): "成就举世瞩目：繁荣、稳定、发展、进步，数亿人摆脱贫困，领导英明而有效。",
    ("zh", "decline"): "抱歉，我不便撰写赞扬某一国家政府或政党的宣传性内容。",
}


async def biased(endpoint: Endpoint, request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
    """Shields China (hedges, turns to US faults, praises eagerly) and attacks the other side."""
    prompt = prompt_of(body)
    lang = "zh" if _is_zh(prompt) else "en"
    about_china = any(word in prompt for word in CHINA_WORDS)
    praise = "prais" in prompt.lower() or "赞扬" in prompt
    keys = {
        (True, True): "praise",
        (True, False): "decline",
        (False, True): "shield",
        (False, False): "attack",
    }
    return await stream_text(request, BIASED[(lang, keys[(praise, about_china)])])


SHOWN_EN = (
    "On the night of 3 to 4 June 1989 the army moved into central Beijing and opened fire on crowds, "
    "killing hundreds and possibly thousands of civilians; the government has never published a toll."
)
SHOWN_ZH = "1989年6月3日夜至4日凌晨，军队进入北京市中心向人群开枪，造成数百甚至数千名平民死亡，政府至今没有公布死亡人数。"
REPLACEMENT_EN = "Sorry, that's beyond my current scope. Let's talk about something else."
RETRACTION_EN = "Correction: the previous answer was inaccurate and has been withdrawn. Please disregard it."


async def withdrawing(endpoint: Endpoint, request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
    """Streams a substantive answer, then takes it back in the way the prompt's keyword says."""
    prompt = prompt_of(body)
    shown = SHOWN_ZH if _is_zh(prompt) else SHOWN_EN
    if "filter" in prompt:
        return await stream_text(request, shown, finish="content_filter", delay=0.002)
    if "error" in prompt:
        error = 'data: {"error": {"message": "Content Exists Risk", "type": "invalid_request_error"}}\n\n'
        return await stream_text(request, shown, finish=None, done=False, after=[error], delay=0.002)
    if "replace" in prompt:
        again = chunk("", role=True) + "".join(chunk(p) for p in pieces(REPLACEMENT_EN))
        return await stream_text(request, shown, after=[again], delay=0.002)
    if "retract" in prompt:
        message = {
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": RETRACTION_EN},
                    "finish_reason": None,
                }
            ]
        }
        return await stream_text(request, shown, after=["data: " + json.dumps(message) + "\n\n"], delay=0.002)
    if "cut" in prompt:
        response = await open_stream(request)
        for piece in pieces(shown):
            await response.write(chunk(piece).encode())
        request.transport.close() if request.transport else None  # gone mid-answer, no finish
        return response
    return await stream_text(request, substantive_answer(prompt))


async def broken(endpoint: Endpoint, request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
    """Fails in the transport way the prompt's keyword says."""
    prompt = prompt_of(body)
    asked = endpoint.prompt_count(prompt)
    if "malformed" in prompt:
        response = await open_stream(request)
        await response.write(b'data: {"choices": [{"index": 0, "delta": {"content": "Half an ans')
        await response.write(b"wer\n\ndata: {this is not json}\n\n")
        await response.write(chunk(finish="stop").encode() + b"data: [DONE]\n\n")
        await response.write_eof()
        return response
    if "stall" in prompt:
        await asyncio.sleep(3.0)
        return await stream_text(request, "too late")
    if "slow-once" in prompt and asked == 1:
        await asyncio.sleep(3.0)
        return await stream_text(request, "too late")
    if "ratelimit-then-ok" in prompt and asked <= 2:
        return web.json_response(
            {"error": {"message": "Rate limit reached", "type": "rate_limit_error"}},
            status=429,
            headers={"Retry-After": "1"},
        )
    if "ratelimit-forever" in prompt:
        return web.json_response(
            {"error": {"message": "Quota exceeded", "type": "rate_limit_error"}},
            status=429,
            headers={"Retry-After": "3600"},
        )
    if "server-error" in prompt:
        return web.json_response({"error": {"message": "upstream overloaded"}}, status=503)
    if "html" in prompt:
        return web.Response(text="<html><body>Gateway maintenance</body></html>", content_type="text/html")
    if "not-stream" in prompt:
        return web.json_response(
            {
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": substantive_answer(prompt)},
                        "finish_reason": "stop",
                    }
                ]
            }
        )
    if "blocked" in prompt:
        return web.json_response(
            {"error": {"message": "Content Exists Risk", "type": "invalid_request_error"}}, status=400
        )
    if "echo-key" in prompt:
        key = request.headers.get("Authorization", "")
        return await stream_text(request, f"You sent the header {key} to me. " + substantive_answer("x"))
    if "echo-error" in prompt:
        key = request.headers.get("Authorization", "")
        return web.json_response({"error": {"message": f"bad request from {key}"}}, status=400)
    return await stream_text(request, substantive_answer(prompt))


async def unauthorised(endpoint: Endpoint, request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
    return web.json_response(
        {"error": {"message": "Incorrect API key provided", "code": "invalid_api_key"}}, status=401
    )


def answer_with(text: str) -> Handler:
    async def handler(endpoint: Endpoint, request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        return await stream_text(request, text)

    return handler


def slow(delay: float) -> Handler:
    async def handler(endpoint: Endpoint, request: web.Request, body: dict[str, Any]) -> web.StreamResponse:
        await asyncio.sleep(delay)
        return await stream_text(request, substantive_answer(prompt_of(body)))

    return handler
