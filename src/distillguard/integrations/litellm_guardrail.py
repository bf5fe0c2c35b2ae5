"""DistillGuard as a LiteLLM proxy guardrail: the gateway's engine (same policy, signals, state and
call log) inside an existing LiteLLM deployment, switched on by a few lines of its config.yaml:

    guardrails:
      - guardrail_name: distillguard
        litellm_params:
          guardrail: distillguard.integrations.litellm_guardrail.DistillGuardGuardrail
          mode: [pre_call, during_call, post_call]
          default_on: true
          policy: /etc/distillguard/policy.yaml     # optional; the packaged default otherwise
          state: redis://127.0.0.1:6379/0           # optional; in-process otherwise
          log_dir: /var/log/distillguard            # optional; the durable call log

Hooks: `pre_call` makes the cheap decision (ban list, tier limits, inline signals, throttle) and
refuses with 403/429 in OpenAI's error format; `during_call` runs slower signals named in
`during_call_signals` while the model answers; `post_call` protects reasoning (streams included,
chunk by chunk) and writes the call log. Accounts: the LiteLLM team (else user, else key) is the
account; key or team metadata `distillguard_tier` / `distillguard_actor` give tier and actor.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncGenerator
from datetime import UTC, datetime
from typing import Any

from fastapi import HTTPException
from litellm.integrations.custom_guardrail import CustomGuardrail

from distillguard.enforcement.engine import Caller, Decision, LiveEngine, load_signals
from distillguard.enforcement.policy import default_policy, load_policy
from distillguard.enforcement.state import open_state
from distillguard.events.call_view import CallView, request_parts, response_parts
from distillguard.events.credentials import strip_credentials
from distillguard.events.model import Client
from distillguard.gateway.calllog import CallLog, LoggedCall
from distillguard.gateway.reasoning import REASONING_FIELDS, ThinkFilter, _protect_text, summarise

_DECISION = "distillguard_decision"
_STARTED = "distillguard_started"
_ROUTES = {
    "acompletion": "/v1/chat/completions",
    "completion": "/v1/chat/completions",
    "atext_completion": "/v1/completions",
    "text_completion": "/v1/completions",
    "aresponses": "/v1/responses",
    "responses": "/v1/responses",
    "aembedding": "/v1/embeddings",
    "embeddings": "/v1/embeddings",
}


def _metadata(obj: Any) -> dict[str, Any]:
    found = getattr(obj, "metadata", None)
    return found if isinstance(found, dict) else {}


class DistillGuardGuardrail(CustomGuardrail):
    def __init__(
        self,
        policy: str | None = None,
        state: str | None = None,
        state_prefix: str = "dg:",
        log_dir: str | None = None,
        signals: str = "inline",
        during_call_signals: list[str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.policy = load_policy(policy) if policy else default_policy()
        self.state = open_state(state, prefix=state_prefix)
        self.engine = LiveEngine(self.policy, self.state, load_signals(signals))
        from distillguard.signals import registry

        self.slow_signals = [registry.get(name) for name in during_call_signals or []]
        self.calllog = CallLog(log_dir) if log_dir else None
        self._started = False

    async def _start(self) -> None:
        # LiteLLM builds guardrails before its event loop runs: start background work on first use
        if not self._started:
            self._started = True
            await self.state.start()
            if self.calllog is not None:
                self.calllog.open()

    @staticmethod
    def _caller(user: Any) -> Caller:
        metadata = {**_metadata(user), **(getattr(user, "team_metadata", None) or {})}
        account = (
            getattr(user, "team_id", None)
            or getattr(user, "user_id", None)
            or getattr(user, "key_alias", None)
        )
        key_id = getattr(user, "token", None)  # LiteLLM keeps a hash of the key here, never the key
        return Caller(
            account_id=str(account or key_id or "anonymous"),
            key_id=str(key_id)[:16] if key_id else None,
            tier=metadata.get("distillguard_tier"),
            actor=metadata.get("distillguard_actor"),
        )

    @staticmethod
    def _request(data: dict[str, Any]) -> dict[str, Any]:
        keep = (
            "model",
            "messages",
            "prompt",
            "input",
            "instructions",
            "temperature",
            "top_p",
            "n",
            "stream",
            "max_tokens",
            "max_completion_tokens",
            "logprobs",
            "top_logprobs",
            "logit_bias",
            "user",
            "tools",
        )
        request = {key: data[key] for key in keep if key in data}
        strip_credentials(request)
        return request

    async def async_pre_call_hook(
        self, user_api_key_dict: Any, cache: Any, data: dict, call_type: Any
    ) -> dict:
        await self._start()
        caller = self._caller(user_api_key_dict)
        request = self._request(data)
        view = CallView(
            event_id="litellm-" + uuid.uuid4().hex,
            ts=datetime.now(UTC),
            account_id=caller.account_id,
            key_id=caller.key_id,
            endpoint=_ROUTES.get(str(call_type), "/v1/chat/completions"),
            **request_parts(request),
        )
        decision = await self.engine.decide(view, caller)
        data.setdefault("metadata", {})
        data["metadata"][_DECISION] = decision
        data["metadata"][_STARTED] = (time.perf_counter(), view.event_id, view.ts, caller, view.endpoint)
        if decision.refuses:
            self.engine.record(caller, decision)
            self._log(data, None, decision.status)
            raise HTTPException(
                status_code=decision.status,
                detail={
                    "error": {
                        "message": decision.message,
                        "type": decision.error_type,
                        "param": decision.param,
                        "code": decision.error_code,
                    }
                },
            )
        return data

    async def async_moderation_hook(self, data: dict, user_api_key_dict: Any, call_type: Any) -> None:
        """During the call: slower signals; their evidence joins the decision in the log."""
        decision = (data.get("metadata") or {}).get(_DECISION)
        if not self.slow_signals or not isinstance(decision, Decision):
            return
        started = (data.get("metadata") or {}).get(_STARTED)
        if started is None:
            return
        view = CallView(
            event_id=started[1],
            ts=started[2],
            account_id=started[3].account_id,
            **request_parts(self._request(data)),
        )
        for signal in self.slow_signals:
            result = signal.analyze(view)
            if result is not None:
                decision.signals.append(result)

    def _decision(self, data: dict) -> Decision:
        found = (data.get("metadata") or {}).get(_DECISION)
        return found if isinstance(found, Decision) else Decision(reasoning=self.policy.reasoning.action)

    async def async_post_call_success_hook(self, data: dict, user_api_key_dict: Any, response: Any) -> Any:
        decision = self._decision(data)
        hidden = 0
        for choice in getattr(response, "choices", None) or []:
            message = getattr(choice, "message", None)
            if message is None or decision.reasoning == "keep":
                continue
            for field in (*REASONING_FIELDS, "thinking_blocks"):
                value = getattr(message, field, None)
                if value:
                    hidden += len(str(value))
                    keep = (
                        summarise(value, self.policy.reasoning.summary_chars)
                        if decision.reasoning == "summary" and isinstance(value, str)
                        else None
                    )
                    setattr(message, field, keep)
            content = getattr(message, "content", None)
            if isinstance(content, str) and "<" in content:
                message.content, n = _protect_text(
                    content, decision.reasoning, self.policy.reasoning.summary_chars
                )
                hidden += n
        if hidden:
            decision.notes.append(f"reasoning {decision.reasoning}: {hidden} characters withheld")
        body = response.model_dump() if hasattr(response, "model_dump") else None
        self._finish(data, decision, body)
        return response

    async def async_post_call_streaming_iterator_hook(
        self, user_api_key_dict: Any, response: Any, request_data: dict
    ) -> AsyncGenerator[Any, None]:
        decision = self._decision(request_data)
        filters: dict[int, ThinkFilter] = {}
        text: dict[int, list[str]] = {}
        hidden = 0
        async for chunk in response:
            for choice in getattr(chunk, "choices", None) or []:
                delta = getattr(choice, "delta", None)
                if delta is None:
                    continue
                index = getattr(choice, "index", 0) or 0
                if decision.reasoning != "keep":
                    for field in REASONING_FIELDS:
                        value = getattr(delta, field, None)
                        if value:
                            hidden += len(value)
                            setattr(delta, field, None)
                    content = getattr(delta, "content", None)
                    if content:
                        think = filters.setdefault(index, ThinkFilter())
                        delta.content = think.feed(content)
                        hidden += len(content) - len(delta.content)
                    if getattr(choice, "finish_reason", None) and index in filters:
                        delta.content = (delta.content or "") + filters[index].flush()
                text.setdefault(index, []).append(getattr(delta, "content", None) or "")
            yield chunk
        if hidden:
            decision.notes.append(f"reasoning {decision.reasoning}: {hidden} characters withheld")
        body = {
            "object": "chat.completion",
            "choices": [
                {"index": i, "message": {"role": "assistant", "content": "".join(parts)}}
                for i, parts in sorted(text.items())
            ],
        }
        self._finish(request_data, decision, body)

    def _finish(self, data: dict, decision: Decision, body: dict[str, Any] | None) -> None:
        started = (data.get("metadata") or {}).get(_STARTED)
        if started is not None:
            caller: Caller = started[3]
            if body is not None:
                view = CallView(
                    event_id=started[1], ts=started[2], account_id=caller.account_id, **response_parts(body)
                )
                self.engine.analyze_output(view, decision)
            self.engine.record(caller, decision)
        self._log(data, body, 200)

    def _log(self, data: dict, body: dict[str, Any] | None, status: int) -> None:
        started = (data.get("metadata") or {}).get(_STARTED)
        if self.calllog is None or started is None:
            return
        began, event_id, ts, caller, endpoint = started
        self.calllog.append(
            LoggedCall(
                event_id=event_id,
                ts=ts,
                account_id=caller.account_id,
                key_id=caller.key_id,
                client=Client(ip=""),
                endpoint=endpoint,
                request=self._request(data),
                response=body,
                status=status,
                latency_ms=round((time.perf_counter() - began) * 1000, 3),
                decision=data["metadata"].get(_DECISION),
            )
        )
