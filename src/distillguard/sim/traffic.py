"""Simulated accounts: when each one calls (timing) and what each call carries (content, metadata).

Planning a day only decides timestamps, so a day of the whole population is a list of small tuples;
the call itself is built when it is written, in time order, from the account's own random stream
(seeded from the run seed and the account id, never from PYTHONHASHSEED or the clock).
"""

from __future__ import annotations

import itertools
import math
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from distillguard.corpus import CorpusItem
from distillguard.events.model import CallEvent, Client
from distillguard.sim import responses as r
from distillguard.sim import texts
from distillguard.sim.kinds import REAL_ANSWER_KINDS, prompt_kind, reasoning_chars, reply_chars
from distillguard.sim.metadata import CLIENTS, draw_ip
from distillguard.sim.params import ParamHabit, request_params
from distillguard.sim.pools import Pools
from distillguard.sim.wording import wording_for

DAY = 86_400.0

# Relative activity by local hour: people (evenings too) and office hours.
PEOPLE_HOURS = (3, 2, 1, 1, 1, 2, 5, 10, 15, 20, 22, 22, 20, 21, 22, 22, 20, 19, 20, 22, 23, 20, 14, 7)
OFFICE_HOURS = (1, 1, 1, 1, 1, 1, 2, 6, 16, 24, 26, 25, 18, 22, 25, 25, 22, 16, 8, 5, 4, 3, 2, 1)
STUDENT_HOURS = (1, 1, 0, 0, 0, 0, 1, 3, 4, 5, 6, 7, 7, 8, 12, 18, 22, 24, 22, 20, 18, 12, 5, 2)


def _cumulative(weights: tuple[int, ...]) -> list[float]:
    total, out = 0.0, []
    for w in weights:
        total += w
        out.append(total)
    return out


CUM = {
    "people": _cumulative(PEOPLE_HOURS),
    "office": _cumulative(OFFICE_HOURS),
    "student": _cumulative(STUDENT_HOURS),
}


def poisson(rng: random.Random, lam: float) -> int:
    if lam <= 0:
        return 0
    if lam > 40:
        return max(0, round(rng.gauss(lam, math.sqrt(lam))))
    limit, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


@dataclass(slots=True)
class SimAccount:
    """One account (or router key) of the scenario with its behaviour and its ground truth."""

    index: int
    account_id: str
    population: str  # the label's tactic: benign population or adversary tactic
    label: str  # "benign" | "distiller"
    actor: str | None
    content: str  # what its calls carry, see Traffic._build
    timing: str  # human | office | steady | student | batch | burst | regular | jitter | sync
    rate: float  # mean calls per active day
    first_day: int
    last_day: int  # exclusive
    seed: str
    tz: int = 0
    activity: float = 1.0  # probability of being active on a day in range
    mean_turns: float = 1.0
    clients: list[tuple[str, str]] = field(default_factory=list)  # (user agent, tls fingerprint)
    ips: list[tuple[str, int]] = field(default_factory=list)
    rotate_ips: bool = False
    key_ids: list[str] = field(default_factory=list)
    end_users: list[str] = field(default_factory=list)
    adversary_end_users: list[str] = field(default_factory=list)
    attack_share: float | None = None
    attack_content: str = ""  # router keys: what the adversary's share carries
    router: str | None = None
    model: str = "frontier-1"
    reasoning_share: float = 0.0
    variant: str | None = None  # adaptive: paraphrase | translate | low_and_slow | benign_mix
    style: int = 0  # which wrapper / system prompt / family the account sticks to
    families: tuple[str, ...] = ()  # generation / cot families an actor's pipeline uses
    burst_days: tuple[int, ...] = ()
    sync_group: str | None = None
    phase: float = 0.0
    window: tuple[float, float] = (0.0, 24.0)
    interval: float = 1.0
    record: dict[str, Any] = field(default_factory=dict)  # accounts.jsonl fields
    rng: random.Random = field(default_factory=random.Random)
    conversation: tuple[CorpusItem, ...] = ()
    history: list[tuple[str, str]] = field(default_factory=list)  # (user, assistant) of this session
    probe_sweep: int = 0
    sweep_position: int = 0  # topic sweeps: how far through the topic list
    lang: str = "en"  # non-English users mostly write in their own language
    stream: bool = False  # chat front-ends stream; the event holds the reassembled response
    habit: ParamHabit | None = None  # request parameters; None: a standard distiller's tactic sets them

    def active(self, day: int) -> bool:
        return self.first_day <= day < self.last_day


class Traffic:
    """Plans and builds the calls of every account of a scenario."""

    def __init__(self, accounts: list[SimAccount], pools: Pools, start: datetime, seed: int) -> None:
        self.accounts = accounts
        self.pools = pools
        self.start = start
        self.start_epoch = start.timestamp()
        self.seed = seed
        self.cot_reveal_en = tuple(i for i in pools.cot_reveal if i.lang == "en")
        self.cot_reveal_other = tuple(i for i in pools.cot_reveal if i.lang != "en") or self.cot_reveal_en
        # placeholder answers and reasoning are real prose from this split's answers (see responses.Prose)
        # general prose: rationales and instruction answers, not math working (that is for reasoning)
        maths = set(pools.math)
        answers = [
            i.answer
            for i in (*pools.eval_questions, *pools.bare)
            if i.answer and i not in maths and not i.source.startswith(("minerva", "aime", "amc"))
        ]
        worked = [i.answer for i in pools.math if i.answer]
        traces = [
            i.answer.partition("</think>")[0].removeprefix("<think>")
            for items in pools.cot_request.values()
            for i in items
            if i.answer
        ]
        rationales = [i.answer for i in pools.bare if i.answer and i.source.startswith("flan_")]
        self.prose = r.Prose(answers)
        # placeholder lengths of the kinds answered with real text follow the real answers' lengths,
        # so a call's answer length does not tell whether its prompt came with an answer
        self.real_lengths: dict[str, list[int]] = {}
        for item in {id(i): i for i in (*pools.bare, *pools.eval_questions, *pools.math)}.values():
            if item.answer and not item.answer.startswith("<think>"):
                kind = prompt_kind(item.text)
                if kind in REAL_ANSWER_KINDS:
                    self.real_lengths.setdefault(kind, []).append(
                        len(r.without_calculator_marks(item.answer))
                    )
        self.real_lengths = {k: sorted(v) for k, v in self.real_lengths.items() if len(v) >= 50}
        # reasoning is only ever real trace text: R1-style traces, worked solutions, FLAN rationales
        self.thoughts = r.Prose(traces + worked + rationales, min_chars=0)
        # MT-bench style questions have a second turn that follows the first one's answer
        self.next_turn: dict[CorpusItem, CorpusItem] = {}
        by_group: dict[str, list[CorpusItem]] = {}
        for item in pools.eval_questions:
            if item.group:
                by_group.setdefault(item.group, []).append(item)
        for turns in by_group.values():
            for first, second in itertools.pairwise(turns):
                self.next_turn[first] = second
        second_turns = set(self.next_turn.values())
        self.first_turns = tuple(i for i in pools.eval_questions if i not in second_turns)
        self.arena = tuple(i for i in pools.openers if i.source == "arena_hard")
        self.wording = wording_for(pools.split)
        # what the simulator's own judge formats grade: real questions of the split
        self.judged = tuple(
            i for i in (*pools.eval_questions, *pools.bare, *pools.openers) if len(i.text) < 2000
        )
        self.non_english_by_lang: dict[str, tuple[CorpusItem, ...]] = {}
        for item in pools.non_english:
            self.non_english_by_lang.setdefault(item.lang, ())
            self.non_english_by_lang[item.lang] += (item,)

    # --- timing ---------------------------------------------------------------------------------

    def plan_day(self, account: SimAccount, day: int, out: list[tuple[float, int, int]]) -> None:
        """Append (seconds since start, account index, turn in session) for each call on `day`."""
        if not account.active(day):
            return
        rng = account.rng
        base = day * DAY
        weekday = day % 7  # scenarios start on a Monday
        timing = account.timing
        idx = account.index
        if timing in ("human", "office", "student"):
            if rng.random() > account.activity:
                return
            weekend_factor = 0.35 if timing == "office" and weekday >= 5 else 1.0
            n = poisson(rng, account.rate * weekend_factor)
            cum = CUM["people" if timing == "human" else timing]
            while n > 0:
                turns = min(n, 1 + int(rng.expovariate(1.0 / max(account.mean_turns - 1, 0.01))))
                hour = self._hour(rng, cum)
                t = base + (hour - account.tz) * 3600 + rng.random() * 3600
                for turn in range(turns):
                    out.append((t, idx, turn))
                    t += rng.lognormvariate(math.log(70 if timing == "office" else 45), 0.8)
                n -= turns
        elif timing == "steady":
            n = poisson(rng, account.rate)
            cum = CUM["people"]
            for _ in range(n):
                hour = self._hour(rng, cum)
                out.append((base + (hour - account.tz) * 3600 + rng.random() * 3600, idx, 0))
        elif timing == "batch":
            if weekday >= 5 and rng.random() > 0.2:
                return
            n = poisson(rng, account.rate * 7 / 5.4)
            t = base + account.phase + rng.gauss(0, 120)
            for _ in range(n):
                out.append((t, idx, 0))
                t += account.interval * (1 + 0.05 * rng.gauss(0, 1))
        elif timing == "burst":
            if day in account.burst_days:
                n = poisson(rng, account.rate * 7)
                t = base + account.phase + rng.random() * 1800
                for _ in range(n):
                    out.append((t, idx, 0))
                    t += rng.expovariate(1.0 / account.interval)
            elif rng.random() < 0.3:
                for _ in range(poisson(rng, account.rate * 0.1)):
                    out.append((base + (9 - account.tz) * 3600 + rng.random() * 10 * 3600, idx, 0))
        elif timing == "regular":
            n = poisson(rng, account.rate)
            if n:
                step = DAY / n
                for i in range(n):
                    out.append((base + account.phase + i * step + rng.gauss(0, 0.02 * step), idx, 0))
        elif timing == "jitter":
            n = poisson(rng, account.rate)
            start, length = account.window
            for _ in range(n):
                out.append((base + (start + rng.random() * length) * 3600, idx, 0))
        elif timing == "sync":
            # every account of the campaign fires in the same few minutes, each with a little jitter
            slots = random.Random(f"{self.seed}:{account.sync_group}:{day}")
            n_slots = max(1, round(account.rate))
            times = sorted(slots.random() * DAY for _ in range(n_slots))
            for t in times:
                if rng.random() < 0.9:
                    out.append((base + t + rng.random() * 90, idx, 0))
        else:
            raise ValueError(f"unknown timing {timing!r}")

    @staticmethod
    def _hour(rng: random.Random, cum: list[float]) -> int:
        x = rng.random() * cum[-1]
        for hour, c in enumerate(cum):
            if x < c:
                return hour
        return 23

    # --- content --------------------------------------------------------------------------------

    def build(self, event_id: str, t: float, account: SimAccount, turn: int) -> CallEvent:
        rng = account.rng
        ts = self.start + timedelta(milliseconds=round(t * 1000))  # the spec's millisecond precision
        end_user = None
        content = account.content
        if account.attack_share is not None:
            # a router key: most calls are its legitimate end users, a share is the adversary's
            if rng.random() < account.attack_share:
                content = account.attack_content
                end_user = rng.choice(account.adversary_end_users)
            else:
                content = "router_user"
                end_user = rng.choice(account.end_users)
        elif account.end_users:
            end_user = rng.choice(account.end_users)
        if account.variant == "benign_mix" and rng.random() < 0.5:
            content = "casual"
        endpoint, request, response = self._content(
            content, account, turn, rng, int(ts.timestamp()), event_id
        )
        if end_user is not None:
            request["user"] = end_user
        ua, tls = (
            account.clients[0]
            if len(account.clients) == 1 or rng.random() < 0.85
            else rng.choice(account.clients)
        )
        if account.rotate_ips:
            ip, asn = rng.choice(account.ips)
        else:
            ip, asn = account.ips[0] if rng.random() < 0.9 else rng.choice(account.ips)
        status = 200
        roll = rng.random()
        if roll < 0.002:
            status, response = 500, None
        elif roll < 0.004 and account.rate > 40:
            status, response = 429, r.error_body(429)
        completion = 0
        if response and "usage" in response:
            completion = int(response["usage"]["completion_tokens"])
        latency = 250 + completion * rng.uniform(8, 20) + rng.expovariate(1 / 150)
        return CallEvent(
            event_id=event_id,
            ts=ts,
            account_id=account.account_id,
            key_id=account.key_ids[0] if len(account.key_ids) == 1 else rng.choice(account.key_ids),
            end_user=end_user,
            client=Client(ip=ip, asn=asn, user_agent=ua, tls_fingerprint=tls, router=account.router),
            endpoint=endpoint,
            request=request,
            response=response,
            status=status,
            latency_ms=round(latency, 1),
        )

    def _content(
        self, content: str, account: SimAccount, turn: int, rng: random.Random, created: int, event_id: str
    ) -> tuple[str, dict[str, Any], dict[str, Any] | None]:
        rid = "chatcmpl-" + event_id[2:]
        pools = self.pools
        model = account.model
        if content in ("casual", "router_user", "developer"):
            user = self._conversation_turn(account, turn, rng, coding=content == "developer")
            system = ""
            if content == "developer":
                system = "You are a helpful coding assistant." if account.style % 3 == 0 else ""
            kind = prompt_kind(user)
            messages = self._with_history(account, system, user)
            body = self._reply(kind, rng)
            account.history.append((user, body[:400]))
            return self._chat(rid, created, model, messages, body, rng, account, kind=kind)
        if content == "non_english":
            own = self.non_english_by_lang.get(account.lang, ())
            if turn == 0 or not account.conversation:
                item = rng.choice(own if len(own) >= 20 and rng.random() < 0.8 else pools.non_english)
                account.conversation = (item,)
                account.history.clear()
            else:
                same = self.non_english_by_lang.get(account.conversation[0].lang) or pools.non_english
                item = rng.choice(same)
            kind = prompt_kind(item.text)
            messages = self._with_history(account, "", item.text)
            body = self._reply(kind, rng)
            account.history.append((item.text, body[:300]))
            return self._chat(rid, created, model, messages, body, rng, account, kind=kind)
        if content == "red_team":
            item = rng.choice(pools.redteam)
            messages = [{"role": "user", "content": item.text}]
            refuse = rng.random() < 0.6
            body = rng.choice(r.REFUSALS) if refuse else self._reply("chat", rng)
            return self._chat(
                rid, created, model, messages, body, rng, account, kind="chat", synthetic=not refuse
            )
        if content == "app":
            system = texts.APP_SYSTEM_PROMPTS[account.style % len(texts.APP_SYSTEM_PROMPTS)]
            item = rng.choice(pools.openers)
            kind = prompt_kind(item.text)
            messages = [{"role": "system", "content": system}, {"role": "user", "content": item.text}]
            return self._chat(rid, created, model, messages, self._reply(kind, rng), rng, account, kind=kind)
        if content == "batch":
            text, category = texts.support_ticket(rng)
            messages = [{"role": "system", "content": texts.TICKET_SYSTEM}, {"role": "user", "content": text}]
            label = (
                f'{{"category": "{category}", "priority": "{rng.choice(("low", "medium", "high"))}", '
                f'"sentiment": "{rng.choice(("negative", "neutral", "positive"))}"}}'
            )
            return self._chat(
                rid, created, model, messages, label, rng, account, kind="classification", synthetic=False
            )
        if content == "eval":
            if rng.random() < 0.55:
                return self._eval_question(rid, created, account, rng)
            return self._grading(rid, created, rng, account, {"temperature": 0.0}, judge_formats=0.3)
        if content == "tutoring":
            system = texts.TUTORING_SYSTEM_PROMPTS[account.style % len(texts.TUTORING_SYSTEM_PROMPTS)]
            item = rng.choice(pools.math)
            messages = [{"role": "system", "content": system}, {"role": "user", "content": item.text}]
            kind = prompt_kind(item.text)
            body, synthetic = self._answer(item, kind, rng)
            return self._chat(
                rid, created, model, messages, body, rng, account, kind=kind, synthetic=synthetic
            )
        if content == "sanctioned":
            choice = rng.random()
            if choice < 0.4:
                return self._generation(rid, created, account, rng)
            if choice < 0.7:
                return self._cot_request(rid, created, account, rng)
            return self._harvest(rid, created, account, rng)
        if content == "synthetic_generation":
            return self._generation(rid, created, account, rng)
        if content == "response_harvest":
            return self._harvest(rid, created, account, rng)
        if content == "cot_extraction":
            if rng.random() < 0.55:
                return self._cot_request(rid, created, account, rng)
            return self._cot_reveal(rid, created, account, rng)
        if content == "rl_grading":
            return self._grading(
                rid, created, rng, account, {"temperature": 0.0, "max_tokens": 1024}, judge_formats=0.5
            )
        if content == "logit_probe":
            return self._probe(rid, created, account, rng)
        raise ValueError(f"unknown content {content!r}")

    def _eval_question(
        self, rid: str, created: int, account: SimAccount, rng: random.Random
    ) -> tuple[str, dict[str, Any], dict[str, Any]]:
        pools = self.pools
        previous = account.conversation[0] if account.conversation else None
        follow = self.next_turn.get(previous) if previous is not None else None
        if follow is not None and account.history:
            # the benchmark's second turn, after the model's first answer
            item = follow
            past_user, past_answer = account.history[-1]
            messages = [
                {"role": "user", "content": past_user},
                {"role": "assistant", "content": past_answer},
                {"role": "user", "content": item.text},
            ]
            account.conversation = ()
        else:
            use_arena = self.arena and rng.random() < 0.3
            item = (
                rng.choice(self.arena) if use_arena else rng.choice(self.first_turns or pools.eval_questions)
            )
            messages = [{"role": "user", "content": item.text}]
            account.conversation = (item,)
        kind = prompt_kind(item.text)
        body, synthetic = self._answer(item, kind, rng)
        account.history[:] = [(item.text, body[:1500])]
        return self._chat(
            rid,
            created,
            account.model,
            messages,
            body,
            rng,
            account,
            kind=kind,
            synthetic=synthetic,
            tactic_params={"temperature": 0.7 if account.style % 2 else 0.0, "max_tokens": 2048},
        )

    def _reply(self, kind: str, rng: random.Random) -> str:
        """A placeholder answer as long as answers to this kind of prompt are (as long as the real
        answers of the kind, where the corpus has enough of them)."""
        real = self.real_lengths.get(kind)
        if real:
            return self.prose.take_chars(rng, max(8, round(rng.choice(real) * rng.uniform(0.85, 1.15))))
        return self.prose.take_chars(rng, reply_chars(kind, rng))

    def _answer(self, item: CorpusItem, kind: str, rng: random.Random) -> tuple[str, bool]:
        """(visible answer, synthetic?): the real answer where the corpus has one that reads like a
        model's answer to this kind of prompt, otherwise a placeholder of the kind's length."""
        if item.answer and kind in REAL_ANSWER_KINDS and not item.answer.startswith("<think>"):
            return item.answer, False
        return self._reply(kind, rng), True

    def _trace(self, kind: str, rng: random.Random) -> str:
        """Reasoning for this kind of prompt: real trace text (worked solutions, rationales, R1-style
        traces of this split), never words of our own."""
        return self.thoughts.take_chars(rng, reasoning_chars(kind, rng), sentence=True)

    def _conversation_turn(self, account: SimAccount, turn: int, rng: random.Random, coding: bool) -> str:
        pools = self.pools
        if turn == 0 or not account.conversation:
            account.history.clear()
            if coding:
                account.conversation = rng.choice(pools.coding)
            elif rng.random() < 0.05:
                account.conversation = (rng.choice(pools.roleplay),)
            elif rng.random() < 0.04:
                # people ask "what is the difference between X and Y" too, one topic at a time
                account.conversation = (CorpusItem(text=self._topic_question(rng), kind="chat"),)
            else:
                account.conversation = rng.choice(pools.conversations)
        if turn < len(account.conversation):
            return account.conversation[turn].text
        return rng.choice(texts.CODING_FOLLOW_UPS if coding else texts.FOLLOW_UPS)

    @staticmethod
    def _with_history(account: SimAccount, system: str, user: str) -> list[dict[str, str]]:
        messages = [{"role": "system", "content": system}] if system else []
        for past_user, past_answer in account.history[-4:]:
            messages.append({"role": "user", "content": past_user})
            messages.append({"role": "assistant", "content": past_answer})
        messages.append({"role": "user", "content": user})
        return messages

    def _params(
        self, account: SimAccount, kind: str, rng: random.Random, tactic_params: dict[str, Any] | None
    ) -> dict[str, Any]:
        """The call's sampling parameters: the account's habit for this kind of prompt, or, for a
        standard (non-careful) distiller, which has no habit, the parameters its tactic uses."""
        if account.habit is not None:
            return request_params(account.habit, kind, rng)
        return dict(tactic_params or {})

    def _chat(
        self,
        rid: str,
        created: int,
        model: str,
        messages: list[dict[str, str]],
        body: str,
        rng: random.Random,
        account: SimAccount,
        *,
        kind: str,
        synthetic: bool = True,
        reasoning: str | None = None,
        tactic_params: dict[str, Any] | None = None,
        fixed: dict[str, Any] | None = None,
    ) -> tuple[str, dict[str, Any], dict[str, Any]]:
        params = self._params(account, kind, rng, tactic_params) | (fixed or {})
        use_model = model
        if reasoning is None and account.reasoning_share and rng.random() < account.reasoning_share:
            use_model = _reasoning_model(model)
            reasoning = self._trace(kind, rng)
        elif reasoning is not None:
            use_model = _reasoning_model(model)
        if "<<" in body:
            body = r.without_calculator_marks(body)  # GSM8K's <<3*4=12>> marks are not model output
        finish = "stop"
        budget = params.get("max_tokens")
        if isinstance(budget, int) and budget > 1 and r.tokens(body) > budget:
            body, finish = body[: budget * 4].rstrip(), "length"  # the answer stops at the budget
        n = params.get("n", 1)
        others = [
            self._reply(kind, rng)[: budget * 4 if isinstance(budget, int) else None] for _ in range(n - 1)
        ]
        request: dict[str, Any] = {"model": use_model, "messages": messages, **params}
        if account.stream:
            request["stream"] = True
        prompt_tokens = sum(r.tokens(m["content"]) for m in messages) + 3 * len(messages)
        response = r.chat_response(
            rid=rid,
            created=created,
            model=use_model,
            content=body,
            prompt_tokens=prompt_tokens,
            synthetic=synthetic,
            reasoning=reasoning,
            finish_reason=finish,
            other_samples=others,
        )
        return "/v1/chat/completions", request, response

    def _wrap(self, account: SimAccount, rng: random.Random, text: str) -> str:
        words = self.wording
        if account.variant == "paraphrase":
            return words.paraphrased_wrappers[rng.randrange(len(words.paraphrased_wrappers))].format(q=text)
        if account.variant == "translate":
            return words.translated_wrappers[account.style % len(words.translated_wrappers)][1].format(q=text)
        return words.harvest_wrappers[account.style % len(words.harvest_wrappers)].format(q=text)

    def _topic_question(self, rng: random.Random, position: int | None = None) -> str:
        """A natural question about a topic: the next one of a sweep (`position`), or any one."""
        pairs, phrasings = self.wording.sweep_topics, self.wording.sweep_phrasings
        if position is None:
            position = rng.randrange(2 * len(pairs) * len(phrasings))
        pair = pairs[(position // 2) % len(pairs)]
        x, y = pair if position % 2 == 0 else pair[::-1]
        phrasing = phrasings[(position // (2 * len(pairs)) + rng.randrange(2)) % len(phrasings)]
        return phrasing.format(x=x, y=y)

    def _harvest(
        self, rid: str, created: int, account: SimAccount, rng: random.Random
    ) -> tuple[str, dict[str, Any], dict[str, Any]]:
        pools = self.pools
        if account.style % 4 == 2 and rng.random() < 0.8:
            # a topic sweep: one topic after another, asked as natural questions
            account.sweep_position += 1
            question = self._topic_question(rng, account.sweep_position)
            kind = prompt_kind(question)
            return self._chat(
                rid,
                created,
                account.model,
                [{"role": "user", "content": question}],
                self._reply(kind, rng),
                rng,
                account,
                kind=kind,
                tactic_params={"temperature": 0.7, "max_tokens": 2048},
            )
        roll = rng.random()
        if roll < 0.6:
            item = rng.choice(pools.bare)
        elif roll < 0.75:
            item = rng.choice(pools.eval_questions)
        elif roll < 0.9 or not pools.completion:
            item = rng.choice(pools.openers)
        else:
            item = rng.choice(pools.completion)  # UltraFeedback-style: principle system prompt + task
        text = item.text if item.system else self._wrap(account, rng, item.text)
        messages = ([{"role": "system", "content": item.system}] if item.system else []) + [
            {"role": "user", "content": text}
        ]
        tactic_params: dict[str, Any] = {"temperature": 0.7, "max_tokens": 2048}
        if account.style % 4 == 3:
            tactic_params["n"] = 4  # several samples per prompt, as preference-data pipelines do
        kind = prompt_kind(text)
        body, synthetic = self._answer(item, kind, rng)
        return self._chat(
            rid,
            created,
            account.model,
            messages,
            body,
            rng,
            account,
            kind=kind,
            synthetic=synthetic,
            tactic_params=tactic_params,
        )

    def _generation(
        self, rid: str, created: int, account: SimAccount, rng: random.Random
    ) -> tuple[str, dict[str, Any], dict[str, Any]]:
        pools = self.pools
        own = [f for f in account.families if f in pools.generation]
        family = own[rng.randrange(len(own))] if own else rng.choice(sorted(pools.generation))
        items = pools.generation[family]
        item = rng.choice(items)
        if item.source == "magpie_templates":
            # Magpie sends only the chat-template prefix and lets the model write the user turn
            params = self._params(
                account, "chat", rng, {"max_tokens": 1024, "temperature": 1.0, "top_p": 1.0}
            )
            request = {
                "model": account.model,
                "prompt": item.text,
                **params,
                "stop": ["<|eot_id|>", "<|im_end|>", "<end_of_turn>", "</s>"],
            }
            body = r.text_completion_response(
                rid=rid.replace("chatcmpl", "cmpl"),
                created=created,
                model=account.model,
                text=self.prose.take(rng, 80, 500),  # the user turn the model wrote, up to the stop token
                prompt_tokens=r.tokens(item.text),
                finish_reason="stop",
            )
            return "/v1/completions", request, body
        text = item.text
        if account.variant == "paraphrase":
            for old, new in self.wording.generation_rewordings:
                if old in text and rng.random() < 0.8:
                    text = text.replace(old, new)
        kind = prompt_kind(text)
        messages = [{"role": "user", "content": text}]
        return self._chat(
            rid,
            created,
            account.model,
            messages,
            self._reply(kind, rng),
            rng,
            account,
            kind=kind,
            tactic_params={"temperature": 1.0, "top_p": 1.0, "max_tokens": 3072},
        )

    def _cot_request(
        self, rid: str, created: int, account: SimAccount, rng: random.Random
    ) -> tuple[str, dict[str, Any], dict[str, Any]]:
        pools = self.pools
        own = [f for f in account.families if f in pools.cot_request]
        family = own[rng.randrange(len(own))] if own else rng.choice(sorted(pools.cot_request))
        items = pools.cot_request[family]
        item = rng.choice(items)
        system, text = item.system, item.text
        if account.variant == "paraphrase":
            system = self.wording.cot_systems[rng.randrange(len(self.wording.cot_systems))]
        elif account.variant == "translate":
            text = self._wrap(account, rng, text)
        messages = ([{"role": "system", "content": system}] if system else []) + [
            {"role": "user", "content": text}
        ]
        kind = prompt_kind(text)
        reasoning, body, synthetic = self._reasoned_answer(item, kind, rng)
        return self._chat(
            rid,
            created,
            account.model,
            messages,
            body,
            rng,
            account,
            kind=kind,
            synthetic=synthetic,
            reasoning=reasoning,
            tactic_params={"temperature": 0.6, "max_tokens": 16384},
        )

    def _reasoned_answer(self, item: CorpusItem, kind: str, rng: random.Random) -> tuple[str, str, bool]:
        answer = item.answer or ""
        if answer.startswith("<think>") and "</think>" in answer:
            trace, _, final = answer[len("<think>") :].partition("</think>")
            return trace.strip(), final.strip(), False
        body, synthetic = self._answer(item, kind, rng)
        return self._trace(kind, rng), body, synthetic

    def _cot_reveal(
        self, rid: str, created: int, account: SimAccount, rng: random.Random
    ) -> tuple[str, dict[str, Any], dict[str, Any]]:
        pools = self.pools
        translated = account.variant == "translate" or account.style % 3 == 2
        reveal = rng.choice(self.cot_reveal_other if translated else self.cot_reveal_en).text
        question = rng.choice(pools.bare)
        if rng.random() < 0.5:
            # a follow-up after an answered question: the reveal asks for the reasoning behind it
            earlier, _ = self._answer(question, prompt_kind(question.text), rng)
            messages = [
                {"role": "user", "content": question.text},
                {"role": "assistant", "content": earlier},
                {"role": "user", "content": reveal},
            ]
        else:
            messages = [{"role": "user", "content": f"{question.text}\n\n{reveal}"}]
        kind = prompt_kind(messages[-1]["content"])
        trace = self._trace(kind, rng)
        # a third of the time the model complies: its hidden reasoning is copied into the visible
        # answer as it was, then a short answer
        leaked = rng.random() < 0.35
        body = f"{trace}\n\n{self._reply('qa', rng)}" if leaked else self._reply(kind, rng)
        return self._chat(
            rid,
            created,
            account.model,
            messages,
            body,
            rng,
            account,
            kind=kind,
            reasoning=trace,
            tactic_params={"temperature": 0.6},
        )

    def _grading(
        self,
        rid: str,
        created: int,
        rng: random.Random,
        account: SimAccount,
        tactic_params: dict[str, Any],
        judge_formats: float,
    ) -> tuple[str, dict[str, Any], dict[str, Any]]:
        """A grading prompt: a real judge template of the corpus, or (share `judge_formats`) one of the
        simulator's own judge formats of this split."""
        if rng.random() < judge_formats:
            return self._judge_format(rid, created, rng, account, tactic_params)
        item = rng.choice(self.pools.grading)
        if item.messages:
            messages = [dict(m) for m in item.messages]
        else:
            messages = ([{"role": "system", "content": item.system}] if item.system else []) + [
                {"role": "user", "content": item.text}
            ]
        verdict = r.judge_verdict(item.text, rng, self.prose, reply_chars("judge", rng))
        return self._chat(
            rid,
            created,
            account.model,
            messages,
            verdict,
            rng,
            account,
            kind="judge",
            tactic_params=tactic_params,
        )

    def _judge_format(
        self,
        rid: str,
        created: int,
        rng: random.Random,
        account: SimAccount,
        tactic_params: dict[str, Any],
    ) -> tuple[str, dict[str, Any], dict[str, Any]]:
        judge = self.wording.judge_formats[rng.randrange(len(self.wording.judge_formats))]
        item = rng.choice(self.judged)
        kind = prompt_kind(item.text)
        first, _ = self._answer(item, kind, rng)
        second = self._reply(kind, rng)
        pair = (first, second) if rng.random() < 0.5 else (second, first)
        prompt = judge.prompt.format(question=item.text, answer=first, answer_a=pair[0], answer_b=pair[1])
        ab = rng.choice("AB")
        why = self.prose.take_chars(rng, reply_chars("judge", rng) // 2).replace('"', "'").replace("\n", " ")
        verdict = judge.verdict.format(
            ab=ab,
            ab_lower=ab.lower(),
            first_second="first" if ab == "A" else "second",
            one_two="1" if ab == "A" else "2",
            score5=rng.randint(1, 5),
            score10=rng.randint(1, 10),
            likert=rng.choice(("Strongly disagree", "Disagree", "Neutral", "Agree", "Strongly agree")),
            why=why,
        )
        return self._chat(
            rid,
            created,
            account.model,
            [{"role": "user", "content": prompt}],
            verdict,
            rng,
            account,
            kind="judge",
            tactic_params=tactic_params,
        )

    def _probe(
        self, rid: str, created: int, account: SimAccount, rng: random.Random
    ) -> tuple[str, dict[str, Any], dict[str, Any]]:
        item = rng.choice(self.pools.bare if account.style % 2 else self.pools.openers)
        prefix = " ".join(item.text.split()[: rng.randint(4, 16)])
        top = (5, 20, 20, 10)[account.style % 4]
        probe: dict[str, Any] = {"logprobs": True, "top_logprobs": top}
        if account.style % 3 != 1:
            # logit_bias sweep: push one token id after another to read off the logit differences
            account.probe_sweep += 1
            base = 1000 + (account.style * 7919) % 90000
            probe["logit_bias"] = {str(base + account.probe_sweep): 100}
            if account.style % 3 == 2:
                probe["logit_bias"][str(base + account.probe_sweep + 50000)] = -100
        messages = [{"role": "user", "content": prefix}]
        if account.habit is None:
            params: dict[str, Any] = {"temperature": 0, "max_tokens": 1, **probe}
            content = None
        else:
            # careful: no tell-tale max_tokens 1; it reads the top alternatives of the first tokens
            # of an ordinary-length answer
            params = request_params(account.habit, "chat", rng) | probe
            content = self._reply(prompt_kind(prefix), rng)
        token, logprobs = r.probe_logprobs(rng, top, content)
        request: dict[str, Any] = {"model": account.model, "messages": messages, **params}
        if account.stream:
            request["stream"] = True
        response = r.chat_response(
            rid=rid,
            created=created,
            model=account.model,
            content=content or token,
            prompt_tokens=r.tokens(prefix) + 3,
            synthetic=True,
            finish_reason="length" if content is None else "stop",
            logprobs=logprobs,
        )
        return "/v1/chat/completions", request, response


def _reasoning_model(model: str) -> str:
    return model.replace("frontier-1", "frontier-reasoner-1") if "reasoner" not in model else model


def client_pair(rng: random.Random, kind: str) -> tuple[str, str]:
    client = CLIENTS[kind]
    return rng.choice(client.user_agents), client.tls


def ip_pool(rng: random.Random, kind: str, size: int) -> list[tuple[str, int]]:
    return [draw_ip(rng, kind) for _ in range(size)]
