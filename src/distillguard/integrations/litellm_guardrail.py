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

import uuid
from collections.abc import AsyncGenerator
from datetime import UTC, datetime
from typing import Any

from fastapi import HTTPException
from litellm.integrations.custom_guardrail import CustomGuardrail

from distillguard.enforcement.engine import Caller, LiveEngine, load_signals
from distillguard.enforcement.parameters import CHAT, known_parameters
from distillguard.enforcement.policy import default_policy, load_policy
from distillguard.enforcement.state import open_state
from distillguard.gateway.calllog import CallLog
from distillguard.gateway.errors import Refusal
from distillguard.gateway.pipeline import (
    ApplyPolicy,
    BanList,
    Call,
    InlineSignals,
    RecordCall,
    Stage,
    TierLimits,
    ValidateRequest,
    run,
)
from distillguard.gateway.reasoning import REASONING_FIELDS, ReasoningProtector
from distillguard.gateway.sse import StreamAssembler

_CALL = "distillguard_call"
_LITELLM_KEYS = frozenset({"metadata", "litellm_metadata"})
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


def _dump(obj: Any) -> dict[str, Any] | None:
    if isinstance(obj, dict):
        return obj
    dump = getattr(obj, "model_dump", None)
    return dump() if callable(dump) else None


def _write_back(target: Any, protected: dict[str, Any], fields: tuple[str, ...]) -> None:
    """Carries what the protector decided (on a dict) back onto LiteLLM's response objects."""
    for field in fields:
        if field in protected:
            value = protected[field]
        elif field in ("content", "text"):
            continue
        else:
            value = None  # removed: a reasoning carrier or an unlisted field
        if hasattr(target, field) and getattr(target, field, None) != value:
            setattr(target, field, value)


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
        self.record = RecordCall(self.engine, self.calllog)
        # the gateway's own decision stages over the same per-call record (`gateway.pipeline`);
        # LiteLLM did the transport part (authentication, routing, parsing)
        self.stages: tuple[Stage, ...] = (
            ValidateRequest(self.policy.requests),
            BanList(self.engine),
            TierLimits(self.engine),
            InlineSignals(self.engine),
            ApplyPolicy(self.engine),
        )
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
    def _request(data: dict[str, Any], endpoint: str) -> dict[str, Any]:
        """The API parameters of LiteLLM's request data (its own bookkeeping keys left out:
        `metadata` is LiteLLM's, holding its auth objects and this guardrail's call)."""
        known = known_parameters(endpoint)
        return {key: value for key, value in data.items() if key in known and key not in _LITELLM_KEYS}

    @staticmethod
    def _call(data: dict[str, Any]) -> Call | None:
        found = (data.get("metadata") or {}).get(_CALL)
        return found if isinstance(found, Call) else None

    async def async_pre_call_hook(
        self, user_api_key_dict: Any, cache: Any, data: dict, call_type: Any
    ) -> dict:
        await self._start()
        call = Call("litellm-" + uuid.uuid4().hex, datetime.now(UTC))
        call.caller = self._caller(user_api_key_dict)
        call.endpoint = _ROUTES.get(str(call_type), CHAT)
        call.request = self._request(data, call.endpoint)
        try:
            await run(self.stages, call)
        except Refusal as refusal:
            call.status, call.failure = refusal.status, refusal.message
            error = {
                "message": refusal.message,
                "type": refusal.type_,
                "param": refusal.param,
                "code": refusal.code,
            }
            call.response = {"error": error}
            self.record(call)
            raise HTTPException(status_code=refusal.status, detail={"error": error}) from None
        data.setdefault("metadata", {})
        data["metadata"][_CALL] = call
        return data

    async def async_moderation_hook(self, data: dict, user_api_key_dict: Any, call_type: Any) -> None:
        """During the call: slower signals; their evidence joins the decision in the log."""
        call = self._call(data)
        if not self.slow_signals or call is None or call.view is None:
            return
        for signal in self.slow_signals:
            result = signal.analyze(call.view)
            if result is not None:
                call.decision.signals.append(result)

    def _protector(self, call: Call | None) -> ReasoningProtector | None:
        action = call.decision.reasoning if call is not None else self.policy.reasoning.action
        return ReasoningProtector(action, self.policy.reasoning.summary_chars) if action != "keep" else None

    async def async_post_call_success_hook(self, data: dict, user_api_key_dict: Any, response: Any) -> Any:
        call = self._call(data)
        protector = self._protector(call)
        body = _dump(response)
        if protector is not None and body is not None and protector.response(body):
            for choice, protected in zip(
                getattr(response, "choices", None) or [], body.get("choices") or [], strict=False
            ):
                message = getattr(choice, "message", None)
                if message is not None and isinstance(protected.get("message"), dict):
                    _write_back(message, protected["message"], _MESSAGE_ATTRIBUTES)
                if hasattr(choice, "logprobs"):
                    choice.logprobs = protected.get("logprobs")
        self._finish(call, protector, body)
        return response

    async def async_post_call_streaming_iterator_hook(
        self, user_api_key_dict: Any, response: Any, request_data: dict
    ) -> AsyncGenerator[Any, None]:
        call = self._call(request_data)
        protector = self._protector(call)
        assembler = StreamAssembler(call.endpoint if call is not None else CHAT)
        async for chunk in response:
            body = _dump(chunk)
            if protector is not None and body is not None:
                if protector.chat_chunk(body) is None:
                    continue  # it carried only reasoning
                if protector.changed:
                    for choice, protected in zip(
                        getattr(chunk, "choices", None) or [], body.get("choices") or [], strict=False
                    ):
                        delta = getattr(choice, "delta", None)
                        if delta is not None and isinstance(protected.get("delta"), dict):
                            _write_back(delta, protected["delta"], _MESSAGE_ATTRIBUTES)
                        if hasattr(choice, "logprobs"):
                            choice.logprobs = protected.get("logprobs")
            if body is not None:
                assembler.add(body)
            yield chunk
        self._finish(call, protector, assembler.result())

    def _finish(
        self, call: Call | None, protector: ReasoningProtector | None, body: dict[str, Any] | None
    ) -> None:
        if call is None:
            return
        if protector is not None:
            call.decision.notes.extend(protector.notes())
        call.status, call.response = 200, body
        self.record(call)


# the attributes of LiteLLM's Message and Delta that the protector may change or remove
_MESSAGE_ATTRIBUTES = ("content", *REASONING_FIELDS, "provider_specific_fields")
