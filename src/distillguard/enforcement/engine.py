"""The live engine: one call's request in, one decision out (allow, flag, throttle, block, ban),
with the evidence for it. The gateway, `distillguard replay` and the LiteLLM guardrail all use it,
so the three can never decide differently.

Order of checks, cheapest and most certain first: ban list, shared-state health, tier parameter
limits, tier rate limit, then the inline signals against the policy's rules. Each is a stage
method over one `Deciding` record, so the gateway can stack them with its own stages. Sanctioned accounts
(`allow_accounts`) skip the rules; in shadow mode everything is decided and nothing enforced.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Sequence
from datetime import UTC, datetime

import msgspec

from distillguard.enforcement.parameters import Ask, asks_of_view, tier_violation
from distillguard.enforcement.policy import SEVERITY, Bucket, Policy, Rule
from distillguard.enforcement.state import Ban, EnforcementState, StateUnavailable, ban_subject
from distillguard.events.call_view import CallView
from distillguard.features.account_window import tls_asn_key
from distillguard.intel.watch import PeerWatch
from distillguard.intel.watch import from_env as peer_watch_from_env
from distillguard.signals.base import Signal, SignalResult

log = logging.getLogger("distillguard.enforcement")


# Indicators an innocent account can share with an actor (a public prompt template, a common HTTP
# client in the same cloud, a company or university network's sign-up IP) hold only accounts
# opened after the decision; only a payment fingerprint holds an account whatever its age.
AGE_CHECKED_KINDS = frozenset({"template", "tls_asn", "system_prompt", "signup_ip"})


class Caller(msgspec.Struct, kw_only=True, frozen=True):
    """Who is calling, as the keys file says: the key's account, tier and linked actor."""

    account_id: str
    key_id: str | None = None
    tier: str | None = None
    actor: str | None = None
    # what billing knows of the account, as enforcement subjects (`payment:<fp>`, `signup_ip:<ip>`):
    # matched against decided actors' indicators to hold a returning actor's new account
    indicators: tuple[str, ...] = ()
    # when the account was opened (epoch seconds), if the keys file says: behavioural indicators
    # (templates, TLS within an ASN) hold only accounts opened after the decision
    created_ts: float | None = None


class Match(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A policy rule that fired, with the score that made it fire."""

    rule: str
    signal: str
    score: float
    action: str


class Decision(msgspec.Struct, kw_only=True):
    """What the policy decided for one call and why; logged with the call."""

    action: str = "allow"
    # False in shadow mode, or when the state was unreachable and the policy fails open.
    enforced: bool = True
    # HTTP status and OpenAI error the client gets when the action is enforced (200: passes).
    status: int = 200
    error_type: str | None = None
    error_code: str | None = None
    param: str | None = None
    message: str | None = None
    matches: list[Match] = []
    signals: list[SignalResult] = []
    output_signals: list[SignalResult] = []
    notes: list[str] = []
    reasoning: str = "keep"  # what happens to reasoning in the response: keep, strip, summary
    retry_after_s: float | None = None  # with a 429: when the bucket has its next token

    @property
    def refuses(self) -> bool:
        """Whether the client gets an error instead of the upstream's answer."""
        return self.enforced and self.status != 200


class Deciding:
    """One call on its way through the engine's stages: what they read and what they found."""

    __slots__ = ("action", "allowed_account", "asks", "call", "caller", "decision", "entry", "fired")

    def __init__(
        self, call: CallView, caller: Caller, decision: Decision, asks: Sequence[Ask], allowed_account: bool
    ) -> None:
        self.call, self.caller, self.decision, self.asks = call, caller, decision, asks
        self.allowed_account = allowed_account
        self.entry: Ban | None = None  # the caller's enforcement entry, if any
        self.action = "allow"  # the most severe action the rules fired so far
        self.fired: Rule | None = None


class LiveEngine:
    """Policy + state + inline signals. `decide` runs on the request path: keep it cheap."""

    def __init__(
        self,
        policy: Policy,
        state: EnforcementState,
        signals: Sequence[Signal],
        peer_watch: PeerWatch | None = None,
    ) -> None:
        self.policy = policy
        self.state = state
        # peers' indicators (`distillguard intel pull`): matched only under a community key, which
        # the environment names (see docs/intel.md); without one this is None and costs nothing
        self.peer_watch = peer_watch if peer_watch is not None else peer_watch_from_env(state)
        self.input_signals = [s for s in signals if s.reads in ("input", "both")]
        self.output_signals = [s for s in signals if s.reads in ("output", "both")]
        self._rules_by_signal: dict[str, list[Rule]] = {}
        for rule in policy.rules:
            self._rules_by_signal.setdefault(rule.signal, []).append(rule)
        self.allowed_accounts = frozenset(policy.allow_accounts)
        # accounts an account verdict throttles (per replica): every call draws from the bucket
        self._throttled: dict[str, str] = {}
        missing = set(self._rules_by_signal) - {s.name for s in signals}
        if missing:
            raise ValueError(
                f"policy rules name signals that are not running: {', '.join(sorted(missing))}; "
                "the gateway runs only inline signals"
            )

    def _refuse(self, decision: Decision, status: int, error_type: str, code: str, message: str) -> Decision:
        decision.status, decision.error_type, decision.error_code, decision.message = (
            status,
            error_type,
            code,
            message,
        )
        return decision

    # ---- the decision as stages: each reads and annotates one `Deciding` record, and returns
    # True when it has decided the call (refused it, or would have in shadow mode) -------------
    def start(self, call: CallView, caller: Caller, asks: Sequence[Ask] | None = None) -> Deciding:
        """The record the stages below share; `asks` are what the request asks of tier limits
        (`enforcement.parameters.check_request`), derived from the view when not given."""
        policy = self.policy
        decision = Decision(enforced=policy.mode == "enforce")
        allowed_account = caller.account_id in self.allowed_accounts
        decision.reasoning = (
            "keep" if allowed_account and policy.reasoning.keep_for_allowed else policy.reasoning.action
        )
        if asks is None:
            asks = asks_of_view(call.logprobs, call.top_logprobs, call.logit_bias_size, call.n)
        return Deciding(call, caller, decision, asks, allowed_account)

    async def check_listed(self, d: Deciding) -> bool:
        """The ban list (account, actor, held indicators), then the shared state's health."""
        decision, caller = d.decision, d.caller
        entry = self.state.banned(caller.account_id, caller.actor)
        if entry is None and not d.allowed_account and self.state.has_indicators:
            entry = await self._hold(caller, self._static_subjects(d.call, caller), decision)
        if entry is None and not d.allowed_account and self.peer_watch is not None:
            entry = await self.peer_watch.hold(d.call, caller, decision)
        d.entry = entry
        if entry is not None and entry.action == "ban":
            self._refuse_listed(decision, entry)
            return True
        if entry is not None and entry.action == "allow":
            d.allowed_account = True
            decision.notes.append(f"sanctioned by {entry.subject}: {entry.reason}")
        if not self.state.healthy and self.policy.fail_mode == "closed":
            decision.action = "block"
            decision.notes.append("shared state unreachable and fail_mode is closed")
            self._refuse(
                decision,
                503,
                "api_error",
                "enforcement_unavailable",
                "The service is temporarily unavailable.",
            )
            return True
        return False

    async def check_tier(self, d: Deciding) -> bool:
        """The tier's parameter limits (`parameters.TIER_LIMITS`), then its rate limit."""
        decision, caller = d.decision, d.caller
        tier = self.policy.tier(caller.tier)
        problem = tier_violation(d.asks, tier, caller.tier or self.policy.default_tier)
        if problem is not None:
            decision.action = "block"
            decision.param = problem[0]
            decision.notes.append(f"tier limit: {problem[1]}")
            self._refuse(decision, 403, "permission_error", "parameter_not_allowed", problem[1] + ".")
            return True
        if tier.rate_limit is not None and not await self._take(
            "tier:" + caller.account_id, tier.rate_limit, decision
        ):
            decision.action = "throttle"
            decision.retry_after_s = 1.0 / tier.rate_limit.rate_per_s
            self._refuse(
                decision,
                429,
                "rate_limit_error",
                "rate_limit_exceeded",
                "Rate limit exceeded for this account.",
            )
            return True
        return False

    def warm_up(self) -> None:
        """Every inline signal once, on a made-up call long enough for each text model to read:
        models load, and compiled kernels load from their cache (or compile), at start-up instead
        of on a customer's first call."""
        words = " ".join(["step", "by", "step", "reasoning", "about", "the", "answer"] * 30)
        call = CallView(
            event_id="warm-up",
            ts=datetime.now(UTC),
            account_id="warm-up",
            system_prompt="You are a helpful assistant.",
            prompt="Explain your answer. " + words,
            n_messages=2,
            n_user_turns=1,
            response_text="Let me think. " + words,
        )
        for signal in (*self.input_signals, *self.output_signals):
            signal.analyze(call)

    def run_signals(self, d: Deciding) -> None:
        """The inline signals, and the policy rules their scores fire (evidence: every match)."""
        decision = d.decision
        for signal in self.input_signals:
            result = signal.analyze(d.call)
            if result is None:
                continue
            decision.signals.append(result)
            for rule in self._rules_by_signal.get(signal.name, ()):
                score = result.score if rule.part is None else result.parts.get(rule.part, 0.0)
                if score >= rule.min_score:
                    decision.matches.append(
                        Match(rule=rule.name, signal=signal.name, score=score, action=rule.action)
                    )
                    if SEVERITY[rule.action] > SEVERITY[d.action]:
                        d.action, d.fired = rule.action, rule

    async def apply_policy(self, d: Deciding) -> None:
        """The most severe action wins, after what is known about the account (a held template,
        a case's throttle, an account verdict, a sanctioned account)."""
        policy, decision, caller = self.policy, d.decision, d.caller
        entry, action, fired = d.entry, d.action, d.fired
        if entry is None and not d.allowed_account and self.state.has_indicators:
            template = _template_subject(decision.signals)
            if template is not None:
                entry = await self._hold(caller, [template], decision)
                if entry is not None and entry.action == "ban":
                    self._refuse_listed(decision, entry)
                    return
        if entry is not None and entry.action == "throttle" and SEVERITY[action] < SEVERITY["throttle"]:
            action, fired = "throttle", _forced_throttle(decision, "case_decision", "case")
            decision.notes.append(f"throttled by {entry.subject}: {entry.reason}")
        verdict = self._throttled.get(caller.account_id)
        if verdict is not None and SEVERITY[action] < SEVERITY["throttle"]:
            action, fired = "throttle", _forced_throttle(decision, "account_verdict", "account_risk")
            decision.notes.append(verdict)
        if d.allowed_account:
            if action != "allow":
                decision.notes.append(
                    f"sanctioned account: {action} by {fired.name if fired else '?'} not applied"
                )
            decision.action = "allow"
            return
        decision.action = action
        if fired is None:
            return
        if action == "throttle":
            actor = caller.actor or (entry.actor if entry is not None else None)
            by = actor if policy.throttle.by == "actor" and actor else caller.account_id
            if not await self._take("throttle:" + by, policy.throttle.bucket, decision):
                decision.retry_after_s = 1.0 / policy.throttle.bucket.rate_per_s
                self._refuse(
                    decision,
                    429,
                    "rate_limit_error",
                    "rate_limit_exceeded",
                    fired.message or f"Too many requests of this kind ({fired.signal}); slow down.",
                )
                return
            decision.notes.append("throttle bucket had a token: served")
            return
        if action == "ban":
            subject = (
                ban_subject("actor", caller.actor)
                if caller.actor
                else ban_subject("account", caller.account_id)
            )
            if decision.enforced:
                try:
                    await self.state.ban(subject, f"rule {fired.name}: {fired.signal}", source="gateway")
                    decision.notes.append(f"banned {subject}")
                except StateUnavailable as error:
                    decision.notes.append(f"ban of {subject} not recorded: {error}")
            else:
                decision.notes.append(f"shadow: would ban {subject}")
            self._refuse(
                decision,
                403,
                "permission_error",
                "account_banned",
                fired.message or "This account has been suspended for violating the usage policy.",
            )
            return
        if action == "block":
            self._refuse(
                decision,
                403,
                "permission_error",
                "request_blocked",
                fired.message or f"This request was blocked by policy ({fired.name}).",
            )
        # flag: log only

    async def decide(self, call: CallView, caller: Caller, asks: Sequence[Ask] | None = None) -> Decision:
        """Every stage in order: ban list, tier limits, inline signals, policy. The gateway runs the
        same stages one by one (`gateway.pipeline`)."""
        d = self.start(call, caller, asks)
        if await self.check_listed(d) or await self.check_tier(d):
            return d.decision
        self.run_signals(d)
        await self.apply_policy(d)
        return d.decision

    def _refuse_listed(self, decision: Decision, entry: Ban) -> Decision:
        decision.action = "ban"
        decision.notes.append(f"on the ban list as {entry.subject}: {entry.reason} (source {entry.source})")
        if entry.hold:
            return self._refuse(
                decision,
                403,
                "permission_error",
                "account_held",
                "This account is on hold pending a review of its link to a suspended account.",
            )
        return self._refuse(
            decision,
            403,
            "permission_error",
            "account_banned",
            "This account has been suspended for violating the usage policy on model distillation.",
        )

    @staticmethod
    def _static_subjects(call: CallView, caller: Caller) -> list[str]:
        subjects = list(caller.indicators)
        if call.client_tls_fingerprint and call.client_asn is not None:
            subjects.append("tls_asn:" + tls_asn_key(call.client_tls_fingerprint, call.client_asn))
        return subjects

    async def _hold(self, caller: Caller, subjects: list[str], decision: Decision) -> Ban | None:
        """Recidivism: an account matching a decided actor's indicator is held to that decision
        (per the policy's `recidivism.kinds`), recorded as its own entry so that every replica
        holds it and the case store opens a case linked to the actor's."""
        kinds = self.policy.recidivism.kinds
        match = self.state.indicator_match([s for s in subjects if s.split(":", 1)[0] in kinds])
        if match is None or match.action == "allow":
            return None
        kind = match.subject.split(":", 1)[0]
        if kind in AGE_CHECKED_KINDS and (caller.created_ts is None or caller.created_ts < match.ts):
            # an existing customer on the same network or public template is not a returning actor
            return None
        action = "ban" if match.action == "ban" and kinds[kind] == "block" else "throttle"  # type: ignore[index]
        hold = Ban(
            subject=ban_subject("account", caller.account_id),
            reason=f"shares {kind} with actor {match.actor or '?'} (case {match.case_id}); held pending review",
            source="recidivism",
            action=action,
            actor=match.actor,
            case_id=match.case_id,
            hold=True,
        )
        if not decision.enforced:
            decision.notes.append(f"shadow: would hold: {hold.reason}")
            return None
        try:
            await self.state.put(hold)
        except StateUnavailable as error:
            decision.notes.append(f"hold not recorded: {error}")
        decision.notes.append(f"held: {hold.reason}")
        return hold

    async def _take(self, key: str, bucket: Bucket, decision: Decision) -> bool:
        try:
            return await self.state.take(key, bucket)
        except StateUnavailable as error:
            if self.policy.fail_mode == "open":
                decision.notes.append(f"fail-open: {error}")
                return True
            decision.notes.append(f"fail-closed: {error}")
            return False

    def analyze_output(self, call: CallView, decision: Decision) -> None:
        """Output signals on the finished response (evidence for the log; they do not act)."""
        for signal in self.output_signals:
            result = signal.analyze(call)
            if result is not None:
                decision.output_signals.append(result)

    def throttle_account(self, account_id: str, reason: str) -> None:
        """From now on every call of this account draws from the throttle bucket (this replica)."""
        self._throttled[account_id] = reason

    def record(self, caller: Caller, decision: Decision) -> None:
        self.state.count(caller.account_id, decision.action)


def _forced_throttle(decision: Decision, rule: str, signal: str) -> Rule:
    """A throttle that comes from a decision about the account, not from this call's signals."""
    decision.matches.append(Match(rule=rule, signal=signal, score=1.0, action="throttle"))
    return Rule(
        name=rule,
        signal=signal,
        action="throttle",
        min_score=0.0,
        message="Too many requests from this account; slow down.",
    )


def _template_subject(results: Sequence[SignalResult]) -> str | None:
    for result in results:
        if result.signal == "template":
            for item in result.matched:
                if item.startswith("fingerprint="):
                    return "template:" + item[len("fingerprint=") :]
    return None


def load_signals(kind: str) -> list[Signal]:
    """The signals the gateway runs on the request path, warmed up on a probe call at start so a
    missing model fails the start, not the first customer call."""
    from distillguard.signals import registry

    if kind not in ("inline", "rules", "none"):
        raise ValueError(f"unknown signal set {kind!r}; known: inline, rules, none")
    if kind == "none":
        return []
    signals: list[Signal] = []
    for name in registry.names():
        cls = registry.signal_class(name)
        if not cls.inline:
            continue
        if kind == "rules" and "mode" in inspect.signature(cls).parameters:
            signals.append(cls(mode="rules"))  # type: ignore[call-arg]
        else:
            signals.append(registry.get(name) if kind == "inline" else cls())
    probe = CallView(event_id="probe", ts=datetime.now(UTC), account_id="probe", prompt="What is 2+2?")
    for signal in signals:
        try:
            signal.analyze(probe)
        except Exception as error:
            raise RuntimeError(f"signal {signal.name} cannot run inline: {error}") from error
    return signals
