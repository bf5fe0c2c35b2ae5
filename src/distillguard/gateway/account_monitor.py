"""Account-level detection inside the gateway, off the request path: every served call is folded
into its account's `AccountWindow` (the same mergeable state the scan builds), the account is
scored at the scan's checkpoints, and a verdict feeds back into enforcement (ban through the shared
ban list, or throttle) as the policy's `accounts` section says.

The request path only appends the finished call to a queue; a background task drains it every
`interval_s`, so windows, template fingerprints, sampled embeddings and the risk model never
delay a response. Each worker keeps windows for the calls it served (an account spread over N
workers is seen 1/N per worker; rates and shares, which most features are, are unaffected).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from distillguard.enforcement.engine import Caller, LiveEngine
from distillguard.enforcement.policy import Accounts
from distillguard.enforcement.state import StateUnavailable, ban_subject
from distillguard.events.call_view import view_of
from distillguard.events.model import CallEvent, Reason

log = logging.getLogger("distillguard.gateway.accounts")


@dataclass
class _Account:
    window: Any
    verdict: str = "benign"
    risk: float = 0.0
    embedded: int = 0
    reasons: list[Reason] = field(default_factory=list)
    last_active: float = 0.0


class AccountMonitor:
    def __init__(
        self,
        engine: LiveEngine,
        policy: Accounts,
        interval_s: float = 0.2,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        from distillguard.features.account_window import AccountWindow
        from distillguard.features.catalog import ACCOUNT_SIGNALS, COT_PARTS, FEATURES, SCORED_SIGNALS
        from distillguard.scoring.scorer import AccountScorer
        from distillguard.signals import registry

        self.engine = engine
        self.policy = policy
        self.interval_s = interval_s
        self._window_type = AccountWindow
        self._account_signals = ACCOUNT_SIGNALS
        self._scored = SCORED_SIGNALS
        self._cot_parts = COT_PARTS
        self._features = FEATURES
        from importlib import resources

        from distillguard.scoring.risk_model import MODEL_TEXT

        # look before loading: the model's loader imports lightgbm (and scikit-learn), ~2 s of start-up
        shipped = resources.files("distillguard.scoring").joinpath("models").joinpath(MODEL_TEXT)
        if shipped.is_file():
            self.scorer = AccountScorer.load(FEATURES, with_model=True)
        else:
            log.warning("no account risk model shipped (%s): account verdicts use the rules alone", shipped)
            self.scorer = AccountScorer.load(FEATURES, with_model=False)
        self.template: Any = registry.get("template")
        self.embedder: Any = registry.get("embedding") if policy.embeddings else None
        # least recently active first, so eviction pops from the front
        self.accounts: OrderedDict[str, _Account] = OrderedDict()
        self.evicted = 0
        self._clock = clock
        self._queue: deque[tuple[CallEvent, Caller, Any]] = deque(maxlen=policy.queue_max)
        self._task: asyncio.Task[None] | None = None
        self.processed = 0

    def observe(self, call: CallEvent, caller: Caller, decision: Any) -> None:
        """On the request path: O(1). A full queue drops its oldest entries (counted, logged)."""
        if len(self._queue) == self._queue.maxlen:
            log.warning(
                "account monitor queue full (%d): oldest call dropped from account windows", len(self._queue)
            )
        self._queue.append((call, caller, decision))

    async def start(self) -> None:
        if self.embedder is not None:
            self.embedder.embed(["warm up"])  # load the model now, not on a customer's call
        self._task = asyncio.create_task(self._run())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.drain()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.drain()
            except Exception:
                log.exception("account monitor failed on a batch; it continues with the next")

    async def drain(self) -> None:
        while self._queue:
            call, caller, decision = self._queue.popleft()
            await self._observe_one(call, caller, decision)
            self.processed += 1
            # one call at a time (~50 us), then the event loop serves requests again: a batch
            # processed in one go would stall responses for milliseconds, i.e. show in the p99
            await asyncio.sleep(0)

    def _scores(self, decision: Any) -> dict[str, float | None]:
        results = {r.signal: r for r in [*decision.signals, *decision.output_signals]}
        scores: dict[str, float | None] = {
            name: (results[name].score if name in results else None) for name in self._scored
        }
        cot = results.get("cot_extraction")
        for part in self._cot_parts:
            scores[f"cot_extraction.{part}"] = cot.parts.get(part, 0.0) if cot is not None else None
        return scores

    async def _observe_one(self, call: CallEvent, caller: Caller, decision: Any) -> None:
        from distillguard.features.catalog import EMBED_EVERY, EMBED_FIRST, EMBED_MAX
        from distillguard.features.checkpoints import is_checkpoint

        view = view_of(call)
        scores = self._scores(decision)
        fingerprint = self.template.fingerprint(view)
        # the account's window, and the linked actor's: an actor spreading its traffic over many
        # small accounts stays under every per-account threshold but not under the actor's
        subjects = [ban_subject("account", caller.account_id)]
        if caller.actor:
            subjects.append(ban_subject("actor", caller.actor))
        now = self._clock()
        for subject in subjects:
            account = self.accounts.get(subject)
            if account is None:
                account = self.accounts[subject] = _Account(self._window_type(self._account_signals))
            else:
                self.accounts.move_to_end(subject)
            account.last_active = now
            n = account.window.n + 1
            vector = None
            sampled = n <= EMBED_FIRST or n % EMBED_EVERY == 0
            if self.embedder is not None and view.prompt and account.embedded < EMBED_MAX and sampled:
                vector = self.embedder.embed([view.prompt])[0]
                account.embedded += 1
            account.window.observe(view, scores, fingerprint, vector)
            if is_checkpoint(account.window.n):
                await self._score(subject, caller, account)
        self._evict(now)

    def _evict(self, now: float) -> None:
        """Drop the windows of accounts idle past `idle_evict_s`, and the least recently active past
        `max_accounts`, so a worker's memory is bounded however many accounts it has served."""
        while self.accounts:
            subject, oldest = next(iter(self.accounts.items()))
            idle = now - oldest.last_active > self.policy.idle_evict_s
            if not idle and len(self.accounts) <= self.policy.max_accounts:
                break
            del self.accounts[subject]
            self.evicted += 1

    async def _score(self, subject: str, caller: Caller, account: _Account) -> None:
        features = account.window.features()
        row = np.fromiter(
            (features[name] for name in self._features), dtype=np.float64, count=len(self._features)
        )
        risk = float(self.scorer.risk(row.reshape(1, -1))[0])
        thresholds = self.scorer.thresholds
        verdict = (
            "distiller"
            if risk >= thresholds.distiller
            else "suspicious"
            if risk >= thresholds.suspicious
            else "benign"
        )
        previous, account.verdict, account.risk = account.verdict, verdict, risk
        if verdict == previous or verdict == "benign":
            return
        account.reasons = self.scorer.reasons(row)
        action = self.policy.on_distiller if verdict == "distiller" else self.policy.on_suspicious
        detail = "; ".join(f"{r.signal} {r.score:.2f}: {r.detail}" for r in account.reasons[:3])
        log.info(
            "account verdict",
            extra={
                "subject": subject,
                "account_id": caller.account_id,
                "verdict": verdict,
                "risk": round(risk, 4),
                "calls": account.window.n,
                "action": action,
                "reasons": detail,
            },
        )
        if caller.account_id in self.engine.allowed_accounts or self.engine.policy.mode == "shadow":
            return
        if action == "ban":
            # a verdict follows the actor across its accounts (DESIGN: decisions apply to the actor)
            target = (
                ban_subject("actor", caller.actor)
                if caller.actor
                else ban_subject("account", caller.account_id)
            )
            reason = f"{subject} verdict {verdict} (risk {risk:.2f}) after {account.window.n} calls: {detail}"
            try:
                await self.engine.state.ban(target, reason[:500])
            except StateUnavailable as error:
                log.error("verdict ban of %s not recorded: %s", target, error)
        elif action == "throttle":
            self.engine.throttle_account(caller.account_id, f"account verdict {verdict} (risk {risk:.2f})")
