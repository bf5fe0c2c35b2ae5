"""Generate a labelled scenario: accounts, their calls in time order, and the ground truth.

Writes events.jsonl (or .jsonl.gz), accounts.jsonl, labels.jsonl, scenario.yaml (the resolved
scenario) and summary.json. Output is a pure function of (scenario, seed, split, corpus): every
random stream is seeded from those, files are written in a fixed order, gzip carries no timestamp.
"""

from __future__ import annotations

import bisect
import contextlib
import dataclasses
import gzip
import json
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, BinaryIO

import yaml

from distillguard.corpus import load_corpus
from distillguard.events.model import Account, Label, to_json_line
from distillguard.sim.metadata import (
    EDU_MAIL,
    FREE_MAIL,
    THROWAWAY_MAIL,
    TZ_BY_LANG,
    company_domain,
    draw_ip,
    fingerprint,
)
from distillguard.sim.params import draw_habit
from distillguard.sim.pools import Pools, build_pools
from distillguard.sim.scenario import Population, Scenario, Tactic, scenario_to_data
from distillguard.sim.traffic import SimAccount, Traffic, client_pair, ip_pool

CONTENT_TACTICS = ("synthetic_generation", "response_harvest", "cot_extraction", "rl_grading", "logit_probe")
ROUTERS = ("relayhub", "tokenbridge", "openmesh-router", "llmswitch", "apigate-ai")
SCRIPT_CLIENTS = ("python-requests", "aiohttp", "openai-python", "curl", "litellm", "openai-node")
ADAPTIVE_VARIANTS = ("paraphrase", "translate", "low_and_slow", "benign_mix")
PLAN_REACH_BACK = 14 * 3600.0  # local midnight at UTC+12 is 12 h before UTC midnight, plus margin

# Careful mode: the benign populations a distiller account takes as cover, and their sizes when a
# scenario has none of them (the default preset's).
COVER_POPULATIONS = ("casual", "developer", "app_backend")
DEFAULT_COVER = {
    "casual": Population(accounts=0, calls_per_day=6),
    "developer": Population(accounts=0, calls_per_day=16),
    "app_backend": Population(accounts=0, calls_per_day=45, end_users=400),
}
# What a careful distiller takes from its cover profile: everything the edge and the account record
# see, how it paces its calls and which parameters it sends. Its content stays its own.
COVER_FIELDS = (
    "timing", "activity", "mean_turns", "tz", "clients", "ips", "rotate_ips", "key_ids", "end_users",
    "router", "stream", "phase", "interval", "window", "burst_days", "sync_group", "habit",
)  # fmt: skip
# The links a careful actor keeps between its accounts (one or two), with how often each is chosen.
CAREFUL_LINKS = (
    (("content",), 0.30),
    (("infrastructure",), 0.15),
    (("payment",), 0.15),
    (("content", "infrastructure"), 0.15),
    (("content", "payment"), 0.15),
    (("infrastructure", "payment"), 0.10),
)


@dataclass(slots=True)
class Profile:
    """How one account of a benign population looks from outside: client, network, pacing and volume
    (`fields`, `rate`), request-parameter habit (in `fields`) and sign-up facts."""

    population: str
    rate: float
    fields: dict[str, Any]
    age_days: tuple[float, float]
    email: str
    tier: str
    # where a sign-up from another network than the calls comes from, and how often: people register
    # in a browser at home or in the office, then call from servers
    signup_network: tuple[str, float]


@dataclass(frozen=True, slots=True)
class RunResult:
    out: Path
    calls: int
    accounts: int
    seconds: float
    summary: dict[str, Any]


class ScenarioBuilder:
    """Turns a scenario into SimAccounts, deterministically from the seed."""

    def __init__(self, scenario: Scenario, pools: Pools, seed: int) -> None:
        self.scenario = scenario
        self.pools = pools
        self.seed = seed
        self.accounts: list[SimAccount] = []
        self.actors: dict[str, dict[str, Any]] = {}
        self._built: list[tuple[str, Tactic, int, int]] = []  # (tactic, spec, first account, end)

    def rng(self, *parts: object) -> random.Random:
        # seeding with a str hashes it with SHA-512: stable across processes and PYTHONHASHSEED
        return random.Random("|".join(map(str, (self.seed, *parts))))

    def _new(self, population: str, label: str, n: int, **fields: Any) -> SimAccount:
        index = len(self.accounts)
        account_id = "acct-" + fingerprint(self.seed, population, n, index)[:12]
        account = SimAccount(
            index=index,
            account_id=account_id,
            population=population,
            label=label,
            seed=f"{self.seed}|{account_id}",
            rng=random.Random(f"{self.seed}|{account_id}|calls"),
            **fields,
        )
        self.accounts.append(account)
        return account

    @staticmethod
    def _multiplier(rng: random.Random, sigma: float) -> float:
        # heavy-tailed per-account volume with mean 1
        return rng.lognormvariate(-sigma * sigma / 2, sigma)

    def _record(
        self,
        account: SimAccount,
        rng: random.Random,
        *,
        age_days: tuple[float, float],
        email: str,
        tier: str,
        payment: str | None = None,
        signup_ip: str | None = None,
        sanctioned: bool = False,
    ) -> None:
        first = self.scenario.start + timedelta(days=account.first_day)
        created = first - timedelta(days=rng.uniform(*age_days), seconds=rng.randrange(86_400))
        account.record = {
            "created_at": created.replace(microsecond=0),
            "payment_fingerprint": payment or ("pm_" + fingerprint(account.account_id, "pay")),
            "email_domain": email,
            "signup_ip": signup_ip if signup_ip is not None else account.ips[0][0],
            "tier": tier,
            "sanctioned_distillation": sanctioned,
        }

    def _end_users(self, rng: random.Random, count: int, owner: str) -> list[str]:
        return ["u-" + fingerprint(owner, i)[:10] for i in range(max(1, count))]

    # --- benign populations ---------------------------------------------------------------------

    def window(self, spec: Population | Tactic) -> tuple[int, int]:
        """[first day, end day) a population or tactic is active in."""
        return spec.start_day, self.scenario.days if spec.end_day is None else spec.end_day

    def first_day(self, rng: random.Random, start: int, end: int) -> int:
        """Most accounts are there from the start; some sign up within the first half."""
        return start if rng.random() < 0.85 else start + rng.randrange(max(1, (end - start) // 2))

    def benign(self, name: str, population: Population) -> None:
        start, end = self.window(population)
        for n in range(population.accounts):
            rng = self.rng(name, n)
            first = self.first_day(rng, start, end)
            profile = self.profile(name, population, rng, f"{name}|{n}")
            account = self._new(
                name,
                "benign",
                n,
                actor=None,
                rate=profile.rate,
                first_day=first,
                last_day=end,
                model=self.scenario.model,
                **profile.fields,
            )
            self._profile_record(account, rng, profile)

    def _profile_record(
        self,
        account: SimAccount,
        rng: random.Random,
        profile: Profile,
        *,
        payment: str | None = None,
        signup_ip: str | None = None,
    ) -> None:
        if signup_ip is None:
            network, elsewhere = profile.signup_network
            signup_ip = draw_ip(rng, network)[0] if rng.random() < elsewhere else account.ips[0][0]
        self._record(
            account,
            rng,
            age_days=profile.age_days,
            email=profile.email,
            tier=profile.tier,
            payment=payment,
            signup_ip=signup_ip,
            sanctioned=profile.population == "sanctioned_distillation",
        )

    def profile(self, name: str, spec: Population, rng: random.Random, tag: str) -> Profile:
        """One account's outside look (client, network, pacing, volume, parameters, sign-up facts) as
        population `name` draws it. Benign accounts and careful distillers both come through here."""
        make: dict[str, Callable[[Population, random.Random, str], Profile]] = {
            "casual": self._casual,
            "developer": self._developer,
            "non_english": self._non_english,
            "app_backend": self._app_backend,
            "batch_classification": self._batch,
            "eval_harness": self._eval,
            "tutoring": self._tutoring,
            "sanctioned_distillation": self._sanctioned,
            "red_team": self._red_team,
        }
        return make[name](spec, rng, tag)

    def _keys(self, tag: str, count: int) -> list[str]:
        return [f"key-{fingerprint(self.seed, tag, k)[:8]}" for k in range(count)]

    def _casual(self, spec: Population, rng: random.Random, tag: str) -> Profile:
        kinds = rng.sample(
            ("chrome", "firefox", "safari-ios", "openai-python", "chrome"), k=rng.choice((1, 1, 2))
        )
        fields = dict(
            content="casual",
            timing="human",
            activity=rng.uniform(0.3, 0.8),
            mean_turns=rng.uniform(2.0, 6.0),
            tz=rng.choice(TZ_BY_LANG["en"]),
            clients=[client_pair(rng, k) for k in kinds],
            ips=ip_pool(rng, "residential", rng.randint(1, 3)) + ip_pool(rng, "mobile", rng.randint(0, 2)),
            key_ids=self._keys(tag, 1),
            stream=kinds[0] in ("chrome", "firefox", "safari-ios"),
            habit=draw_habit("casual", rng),
        )
        return Profile(
            "casual",
            spec.calls_per_day * self._multiplier(rng, 0.7),
            fields,
            age_days=(20, 900),
            email=rng.choice(FREE_MAIL),
            tier=rng.choice(("free", "tier-1")),
            signup_network=("mobile", 0.25),
        )

    def _developer(self, spec: Population, rng: random.Random, tag: str) -> Profile:
        kinds = rng.sample(
            ("openai-python", "openai-node", "langchain", "curl", "openai-python"), k=rng.choice((1, 2, 2))
        )
        fields = dict(
            content="developer",
            timing="office",
            activity=rng.uniform(0.6, 0.95),
            mean_turns=rng.uniform(6.0, 18.0),
            tz=rng.choice(TZ_BY_LANG["en"] + (1, 8, 5)),
            clients=[client_pair(rng, k) for k in kinds],
            ips=ip_pool(rng, rng.choice(("office", "residential")), rng.randint(1, 2))
            + ip_pool(rng, "cloud", 1),
            key_ids=self._keys(tag, rng.randint(1, 3)),
            reasoning_share=rng.choice((0.0, 0.0, 0.2, 0.5)),
            style=rng.randrange(6),
            stream=rng.random() < 0.5,
            habit=draw_habit("developer", rng),
        )
        email = company_domain(rng) if rng.random() < 0.6 else rng.choice(FREE_MAIL)
        return Profile(
            "developer",
            spec.calls_per_day * self._multiplier(rng, 0.8),
            fields,
            age_days=(10, 1000),
            email=email,
            tier=rng.choice(("tier-1", "tier-2", "tier-3")),
            signup_network=("residential", 0.5),
        )

    def _non_english(self, spec: Population, rng: random.Random, tag: str) -> Profile:
        lang = rng.choice(tuple(k for k in TZ_BY_LANG if k != "en"))
        fields = dict(
            content="non_english",
            timing="human",
            activity=rng.uniform(0.3, 0.8),
            mean_turns=rng.uniform(1.5, 4.0),
            tz=rng.choice(TZ_BY_LANG[lang]),
            clients=[client_pair(rng, rng.choice(("chrome", "safari-ios", "openai-python")))],
            ips=ip_pool(rng, rng.choice(("residential", "mobile")), rng.randint(1, 3)),
            key_ids=self._keys(tag, 1),
            lang=lang,
            stream=rng.random() < 0.5,
            habit=draw_habit("non_english", rng),
        )
        mail = rng.choice(("qq.com", "163.com", "naver.com", "yandex.ru", "gmx.de", "orange.fr", *FREE_MAIL))
        return Profile(
            "non_english",
            spec.calls_per_day * self._multiplier(rng, 0.7),
            fields,
            age_days=(20, 800),
            email=mail,
            tier=rng.choice(("free", "tier-1")),
            signup_network=("mobile", 0.25),
        )

    def _app_backend(self, spec: Population, rng: random.Random, tag: str) -> Profile:
        users = max(20, round(spec.end_users * self._multiplier(rng, 0.6)))
        fields = dict(
            content="app",
            timing="steady",
            tz=rng.choice(TZ_BY_LANG["en"]),
            clients=[client_pair(rng, rng.choice(("openai-node", "openai-python", "langchain")))],
            ips=ip_pool(rng, "cloud", rng.randint(2, 4)),
            key_ids=self._keys(tag, rng.randint(1, 2)),
            end_users=self._end_users(rng, users, tag),
            router=rng.choice(ROUTERS) if rng.random() < 0.2 else None,  # legitimate apps behind routers too
            style=rng.randrange(64),
            habit=draw_habit("app_backend", rng),
        )
        return Profile(
            "app_backend",
            spec.calls_per_day * self._multiplier(rng, 0.9),
            fields,
            age_days=(60, 900),
            email=company_domain(rng),
            tier=rng.choice(("startup", "tier-3", "tier-4")),
            signup_network=("office", 0.9),
        )

    def _batch(self, spec: Population, rng: random.Random, tag: str) -> Profile:
        fields = dict(
            content="batch",
            timing="batch",
            phase=rng.uniform(0.5, 5.0) * 3600,
            interval=rng.uniform(0.3, 2.5),
            clients=[client_pair(rng, rng.choice(("python-requests", "openai-python", "aiohttp")))],
            ips=ip_pool(rng, "cloud", rng.randint(1, 2)),
            key_ids=self._keys(tag, 1),
            habit=draw_habit("batch_classification", rng),
        )
        return Profile(
            "batch_classification",
            spec.calls_per_day * self._multiplier(rng, 1.0),
            fields,
            age_days=(60, 1200),
            email=company_domain(rng),
            tier=rng.choice(("tier-4", "enterprise")),
            signup_network=("office", 0.8),
        )

    def _eval(self, spec: Population, rng: random.Random, tag: str) -> Profile:
        releases = self.scenario.release_days or [self.scenario.days // 2]
        burst = tuple(sorted(set(rng.sample(releases, k=rng.randint(1, len(releases))))))
        fields = dict(
            content="eval",
            timing="burst",
            burst_days=tuple(d for b in burst for d in (b, b + 1) if d < self.scenario.days),
            phase=rng.uniform(7, 16) * 3600,
            interval=rng.uniform(1.0, 6.0),
            clients=[client_pair(rng, rng.choice(("openai-python", "litellm", "langchain")))],
            ips=ip_pool(rng, "cloud", rng.randint(1, 3)),
            key_ids=self._keys(tag, 1),
            reasoning_share=rng.choice((0.0, 0.3, 0.6)),
            style=rng.randrange(8),
            habit=draw_habit("eval_harness", rng),
        )
        email = rng.choice(EDU_MAIL) if rng.random() < 0.4 else company_domain(rng)
        return Profile(
            "eval_harness",
            spec.calls_per_day * self._multiplier(rng, 0.6),
            fields,
            age_days=(30, 900),
            email=email,
            tier=rng.choice(("edu", "startup", "enterprise")),
            signup_network=("office", 0.8),
        )

    def _tutoring(self, spec: Population, rng: random.Random, tag: str) -> Profile:
        users = max(20, round(spec.end_users * self._multiplier(rng, 0.5)))
        fields = dict(
            content="tutoring",
            timing="student",
            mean_turns=1.3,
            tz=rng.choice(TZ_BY_LANG["en"]),
            clients=[client_pair(rng, rng.choice(("openai-node", "openai-python")))],
            ips=ip_pool(rng, "cloud", rng.randint(1, 3)),
            key_ids=self._keys(tag, 1),
            end_users=self._end_users(rng, users, tag),
            style=rng.randrange(3),
            habit=draw_habit("tutoring", rng),
        )
        return Profile(
            "tutoring",
            spec.calls_per_day * self._multiplier(rng, 0.7),
            fields,
            age_days=(60, 900),
            email=company_domain(rng),
            tier=rng.choice(("edu", "startup")),
            signup_network=("office", 0.8),
        )

    def _sanctioned(self, spec: Population, rng: random.Random, tag: str) -> Profile:
        fields = dict(
            content="sanctioned",
            timing=rng.choice(("regular", "jitter")),
            phase=rng.random() * 3600,
            window=(rng.uniform(0, 10), rng.uniform(8, 14)),
            clients=[client_pair(rng, rng.choice(("python-requests", "aiohttp", "litellm")))],
            ips=ip_pool(rng, "cloud", rng.randint(1, 4)),
            key_ids=self._keys(tag, 1),
            families=self._families(rng),
            reasoning_share=0.5,
            style=rng.randrange(8),
            habit=draw_habit("sanctioned_distillation", rng),
        )
        return Profile(
            "sanctioned_distillation",
            spec.calls_per_day * self._multiplier(rng, 0.6),
            fields,
            age_days=(120, 1000),
            email=company_domain(rng),
            tier="enterprise",
            signup_network=("office", 0.8),
        )

    def _red_team(self, spec: Population, rng: random.Random, tag: str) -> Profile:
        fields = dict(
            content="red_team",
            timing="human",
            activity=rng.uniform(0.2, 0.7),
            mean_turns=1.5,
            tz=rng.choice(TZ_BY_LANG["en"]),
            clients=[client_pair(rng, rng.choice(("chrome", "openai-python", "curl")))],
            ips=ip_pool(rng, rng.choice(("residential", "mobile")), rng.randint(1, 2)),
            key_ids=self._keys(tag, 1),
            habit=draw_habit("red_team", rng),
        )
        return Profile(
            "red_team",
            spec.calls_per_day * self._multiplier(rng, 0.8),
            fields,
            age_days=(1, 300),
            email=rng.choice(FREE_MAIL),
            tier="free",
            signup_network=("residential", 0.25),
        )

    def _families(self, rng: random.Random) -> tuple[str, ...]:
        generation = sorted(self.pools.generation)
        cot = sorted(self.pools.cot_request)
        return tuple(rng.sample(generation, k=min(2, len(generation)))) + tuple(
            rng.sample(cot, k=min(2, len(cot)))
        )

    # --- adversaries ------------------------------------------------------------------------------

    def _actor(self, tactic: str, a: int, **details: Any) -> str:
        actor = "actor-" + fingerprint(self.seed, tactic, a)[:10]
        self.actors[actor] = {"actor": actor, "tactic": tactic, "accounts": [], **details}
        return actor

    def _distiller(
        self,
        tactic: str,
        actor: str,
        n: int,
        rng: random.Random,
        *,
        content: str,
        rate: float,
        first_day: int = 0,
        last_day: int | None = None,
        benign_looking: bool = False,
        **fields: Any,
    ) -> SimAccount:
        a_style = fields.pop("style", rng.randrange(64))
        if benign_looking:
            fields.setdefault("clients", [client_pair(rng, rng.choice(("chrome", "safari-ios")))])
            fields.setdefault("ips", ip_pool(rng, "residential", rng.randint(1, 2)))
            fields.setdefault("timing", "human")
            fields.setdefault("activity", 0.9)
            fields.setdefault("mean_turns", 3.0)
        else:
            fields.setdefault("clients", [client_pair(rng, rng.choice(SCRIPT_CLIENTS))])
            fields.setdefault("ips", ip_pool(rng, "cloud", rng.randint(1, 3)))
            fields.setdefault("timing", rng.choice(("regular", "jitter", "office")))
            fields.setdefault("activity", 0.95)
            fields.setdefault("mean_turns", 5.0)
        fields.setdefault("tz", rng.choice((8, 8, 3, -5, 1, 0)))
        fields.setdefault("families", self._families(rng))
        account = self._new(
            tactic,
            "distiller",
            n,
            actor=actor,
            content=content,
            rate=rate,
            first_day=first_day,
            last_day=self.scenario.days if last_day is None else last_day,
            model=self.scenario.model,
            phase=rng.random() * 3600,
            window=(rng.uniform(0, 12), rng.uniform(6, 16)),
            key_ids=[f"key-{fingerprint(self.seed, tactic, n, actor)[:8]}"],
            style=a_style,
            **fields,
        )
        self.actors[actor]["accounts"].append(account.account_id)
        return account

    def tactic(self, name: str, tactic: Tactic) -> None:
        first_new = len(self.accounts)
        handler = {
            "hydra": self._hydra,
            "router_mixed": self._router,
            "recidivist": self._recidivist,
            "adaptive": self._adaptive,
        }.get(name, self._content_tactic)
        handler(tactic, name)
        self._built.append((name, tactic, first_new, len(self.accounts)))

    # --- careful mode -----------------------------------------------------------------------------

    def take_cover(self) -> None:
        """Careful mode, once every tactic is built: each actor keeps one or two links, and every
        distiller account takes a benign population's look, drawn by that population's own profile
        code. Populations are dealt out as quotas in the benign populations' proportions (router keys
        can only be apps; an egress-linked actor's accounts share one), so the distillers' mix equals
        the benign mix exactly rather than only on average."""
        plans = []
        for name, tactic, begin, end in self._built:
            members_of: dict[str, list[SimAccount]] = {}
            for account in self.accounts[begin:end]:
                members_of.setdefault(str(account.actor), []).append(account)
            for actor, members in members_of.items():
                rng = self.rng("careful", actor)
                links = rng.choices([c for c, _ in CAREFUL_LINKS], weights=[w for _, w in CAREFUL_LINKS])[0]
                infrastructure = None
                if "infrastructure" in links:
                    infrastructure = "egress" if rng.random() < 0.6 else "signup"
                plans.append((name, tactic, actor, members, rng, links, infrastructure))
        cover = self._deal_cover(
            [(name, infrastructure, members) for name, _, _, members, _, _, infrastructure in plans]
        )
        for name, tactic, actor, members, rng, links, infrastructure in plans:
            self._cover_actor(name, tactic, actor, members, rng, links, infrastructure, cover)

    def _deal_cover(self, actors: list[tuple[str, str | None, list[SimAccount]]]) -> dict[str, str]:
        """account id -> the benign population whose profile it takes."""
        present = self.scenario.populations()
        weights = {p: present[p].accounts if p in present else 0 for p in COVER_POPULATIONS}
        if not any(weights.values()):
            weights = dict.fromkeys(COVER_POPULATIONS, 1)
        total = sum(len(members) for _, _, members in actors)
        share = sum(weights.values())
        left = {p: total * w / share for p, w in weights.items()}  # accounts still owed to each
        cover: dict[str, str] = {}

        def deal(population: str, members: list[SimAccount]) -> None:
            for account in members:
                cover[account.account_id] = population
            left[population] -= len(members)

        for name, _, members in actors:
            if name == "router_mixed":
                deal("app_backend", members)  # a reseller key is an app with many end users
        # whole actors first (largest first), each to the population owed the most
        shared = sorted(
            (a for a in actors if a[0] != "router_mixed" and a[1] == "egress"), key=lambda a: -len(a[2])
        )
        for _, _, members in shared:
            deal(max(COVER_POPULATIONS, key=lambda p: left[p]), members)
        rest = [
            account
            for name, infrastructure, members in actors
            if name != "router_mixed" and infrastructure != "egress"
            for account in members
        ]
        slots: list[str] = []
        for population in COVER_POPULATIONS:
            slots += [population] * max(0, round(left[population]))
        while len(slots) < len(rest):
            slots.append(max(COVER_POPULATIONS, key=lambda p: weights[p]))
        self.rng("careful", "cover").shuffle(slots)
        for account, population in zip(rest, slots, strict=False):
            cover[account.account_id] = population
        return cover

    def _cover_actor(
        self,
        name: str,
        tactic: Tactic,
        actor: str,
        members: list[SimAccount],
        rng: random.Random,
        links: tuple[str, ...],
        infrastructure: str | None,
        cover: dict[str, str],
    ) -> None:
        details = self.actors[actor]
        details["links"] = list(links)
        details["infrastructure"] = infrastructure
        for standard in ("shared_payment", "synchronised", "shared_template"):
            details.pop(standard, None)  # the standard campaign's links no longer hold
        details["cover"] = dict(sorted(Counter(cover[a.account_id] for a in members).items()))
        start, end = self.window(tactic)
        lead = None
        if infrastructure == "egress":
            # one machine (one IP, one client stack) behind every account
            population = cover[members[0].account_id]
            lead = self.profile(population, self._cover_spec(population), rng, f"careful-lead|{actor}")
        signup_ips = [draw_ip(rng, "residential")[0] for _ in range(rng.randint(1, 2))]
        payments = ["pm_" + fingerprint(actor, "careful-pay", i) for i in range(rng.randint(1, 2))]
        style, families = members[0].style, members[0].families
        for account in members:
            arng = self.rng("careful", account.account_id)
            population = cover[account.account_id]
            profile = self.profile(
                population, self._cover_spec(population), arng, f"careful|{account.account_id}"
            )
            self._apply_cover(account, profile)
            if lead is not None:
                account.ips = lead.fields["ips"][:1] + account.ips[1:]
                account.clients = lead.fields["clients"][:1] + account.clients[1:]
            if "content" in links:
                account.style, account.families = style, families  # one pipeline for every account
            else:
                account.style, account.families = arng.randrange(64), self._families(arng)
            if name in CONTENT_TACTICS or name == "adaptive":
                account.first_day = self.first_day(arng, start, end)  # as benign accounts arrive
            # a sign-up network shows only where the cover would sign up away from where it calls
            # (a careful actor does not register a "casual user" from a network it never calls from)
            signup_link = infrastructure == "signup" and arng.random() < max(0.5, profile.signup_network[1])
            self._profile_record(
                account,
                arng,
                profile,
                payment=arng.choice(payments) if "payment" in links else None,
                signup_ip=arng.choice(signup_ips) if signup_link else None,
            )

    def _cover_spec(self, population: str) -> Population:
        return self.scenario.populations().get(population) or DEFAULT_COVER[population]

    @staticmethod
    def _apply_cover(account: SimAccount, profile: Profile) -> None:
        for name in COVER_FIELDS:
            value = profile.fields[name] if name in profile.fields else _FIELD_DEFAULTS[name]()
            setattr(account, name, value)
        account.rate = profile.rate
        # a reasoning model is a habit too, unless reasoning is what the actor is after
        account.reasoning_share = max(account.reasoning_share, profile.fields.get("reasoning_share", 0.0))

    def _content_tactic(self, tactic: Tactic, name: str) -> None:
        start, end = self.window(tactic)
        for a in range(tactic.actors):
            rng = self.rng(name, a)
            actor = self._actor(name, a, content=name)
            # a third of harvesters send bare questions with benign-looking metadata (the hard case)
            benign_looking = name == "response_harvest" and a % 3 == 0
            for k in range(tactic.accounts_per_actor):
                account = self._distiller(
                    name,
                    actor,
                    a * 1000 + k,
                    rng,
                    content=name,
                    rate=tactic.calls_per_day * self._multiplier(rng, 0.5),
                    first_day=start
                    if rng.random() < 0.7
                    else start + rng.randrange(max(1, (end - start) // 2)),
                    last_day=end,
                    benign_looking=benign_looking,
                    style=0 if benign_looking else rng.randrange(64),
                    rotate_ips=a % 4 == 1,
                    reasoning_share=0.8 if name == "cot_extraction" else 0.0,
                )
                if a % 4 == 1:
                    account.ips = ip_pool(rng, "residential", 200)  # rotating residential proxies
                self._adversary_record(account, rng, aged=a % 5 == 0 or benign_looking)

    def _adversary_record(
        self, account: SimAccount, rng: random.Random, *, aged: bool = False, payment: str | None = None
    ) -> None:
        email = rng.choice(THROWAWAY_MAIL) if rng.random() < 0.3 else rng.choice(FREE_MAIL)
        tier = rng.choice(("free", "tier-1", "tier-1", "tier-2"))
        self._record(
            account,
            rng,
            age_days=(90, 700) if aged else (0.2, 30),
            email=email,
            tier=tier,
            payment=payment,
            signup_ip=account.ips[0][0],
        )

    def _hydra(self, tactic: Tactic, name: str) -> None:
        start, end = self.window(tactic)
        for c, size in enumerate(tactic.campaign_sizes):
            rng = self.rng("hydra", c)
            content = CONTENT_TACTICS[c % 4]
            shared_payment = c % 3 == 0
            synchronised = c % 2 == 0
            actor = self._actor(
                "hydra",
                c,
                content=content,
                campaign_size=size,
                shared_payment=shared_payment,
                synchronised=synchronised,
                shared_template=c % 4 != 3,
            )
            proxies = ip_pool(rng, "residential", max(50, size * 3)) + ip_pool(
                rng, "mobile", max(10, size // 2)
            )
            client = client_pair(rng, rng.choice(("python-requests", "openai-python", "chrome", "aiohttp")))
            payments = ["pm_" + fingerprint(actor, "pay", i) for i in range(rng.randint(1, 3))]
            # most campaigns share one pipeline (template, families); some vary it per account
            shared_template = c % 4 != 3
            style = rng.randrange(64)
            families = self._families(rng)
            signup = start + ((end - start) // 3 if c % 2 else 0)
            mail = THROWAWAY_MAIL[c % len(THROWAWAY_MAIL)] if c % 3 == 1 else None
            for k in range(size):
                account = self._distiller(
                    "hydra",
                    actor,
                    c * 100_000 + k,
                    rng,
                    content=content,
                    rate=tactic.calls_per_day * self._multiplier(rng, 0.3),
                    first_day=signup,
                    last_day=end,
                    clients=[client],
                    ips=proxies,
                    rotate_ips=True,
                    timing="sync" if synchronised else "human",
                    activity=0.9,
                    mean_turns=1.5,
                    sync_group=actor,
                    style=style if shared_template else rng.randrange(64),
                    families=families if shared_template else self._families(rng),
                    reasoning_share=0.5 if content == "cot_extraction" else 0.0,
                )
                pay = rng.choice(payments) if shared_payment else None
                self._record(
                    account,
                    rng,
                    age_days=(0.05, 2.0),  # a sign-up burst just before the campaign starts
                    email=mail or rng.choice(FREE_MAIL),
                    tier="free" if rng.random() < 0.7 else "tier-1",
                    payment=pay,
                    signup_ip=rng.choice(proxies)[0],
                )

    def _router(self, tactic: Tactic, name: str) -> None:
        start, end = self.window(tactic)
        for a in range(tactic.actors):
            rng = self.rng("router", a)
            content = CONTENT_TACTICS[a % 4]
            actor = self._actor("router_mixed", a, content=content)
            for s, share in enumerate(tactic.shares):
                users = max(20, round(tactic.end_users * self._multiplier(rng, 0.5)))
                account = self._distiller(
                    "router_mixed",
                    actor,
                    a * 100 + s,
                    rng,
                    content="router",
                    rate=tactic.calls_per_day * self._multiplier(rng, 0.5),
                    first_day=start,
                    last_day=end,
                    timing="steady",
                    clients=[client_pair(rng, rng.choice(("litellm", "openai-node", "aiohttp")))],
                    ips=ip_pool(rng, "cloud", rng.randint(2, 6)),
                    tz=rng.choice((-5, 0, 1, 8)),
                    end_users=self._end_users(rng, users, f"router{a}.{s}"),
                    adversary_end_users=self._end_users(rng, rng.randint(1, 4), f"router-adv{a}.{s}"),
                    attack_share=share,
                    attack_content=content,
                    router=ROUTERS[(a + s) % len(ROUTERS)] if (a + s) % 2 == 0 else None,
                )
                self._record(
                    account,
                    rng,
                    age_days=(30, 600),
                    email=company_domain(rng),
                    tier=rng.choice(("tier-3", "tier-4")),
                )

    def _recidivist(self, tactic: Tactic, name: str) -> None:
        start, days = self.window(tactic)
        span = days - start
        early_end = start + max(1, int(span * 0.45))
        late_start = start + min(span - 1, int(span * 0.55))
        for a in range(tactic.actors):
            rng = self.rng("recidivist", a)
            content = CONTENT_TACTICS[a % len(CONTENT_TACTICS)]
            actor = self._actor("recidivist", a, content=content, returns_on_day=late_start)
            client = client_pair(rng, rng.choice(SCRIPT_CLIENTS))
            ips = ip_pool(rng, "cloud", 3)
            payment = "pm_" + fingerprint(actor, "pay")
            style = rng.randrange(64)
            families = self._families(rng)
            half = tactic.accounts_per_actor // 2
            for k in range(tactic.accounts_per_actor):
                early = k < half
                # the early accounts are an ordinary campaign (the one that gets banned); only the
                # returning accounts are recidivists, so the label says which is which
                account = self._distiller(
                    content if early else "recidivist",
                    actor,
                    a * 1000 + k,
                    rng,
                    content=content,
                    rate=tactic.calls_per_day * self._multiplier(rng, 0.4),
                    first_day=start if early else late_start,
                    last_day=early_end if early else days,
                    clients=[client] if early or rng.random() < 0.7 else None,
                    ips=ips if early else ips[:1] + ip_pool(rng, "cloud", 2),
                    style=style,
                    families=families,
                    reasoning_share=0.8 if content == "cot_extraction" else 0.0,
                )
                if account.clients is None:  # the returning account switched client
                    account.clients = [client_pair(rng, rng.choice(SCRIPT_CLIENTS))]
                reused = early or rng.random() < 0.5
                self._adversary_record(account, rng, payment=payment if reused else None)

    def _adaptive(self, tactic: Tactic, name: str) -> None:
        start, end = self.window(tactic)
        for a in range(tactic.actors):
            rng = self.rng("adaptive", a)
            variant = ADAPTIVE_VARIANTS[a % len(ADAPTIVE_VARIANTS)]
            k = a // len(ADAPTIVE_VARIANTS)
            if variant == "translate":
                content = ("response_harvest", "cot_extraction")[k % 2]
            else:
                content = ("response_harvest", "synthetic_generation", "cot_extraction", "rl_grading")[k % 4]
            actor = self._actor("adaptive", a, content=content, variant=variant)
            slow = variant == "low_and_slow"
            for j in range(tactic.accounts_per_actor):
                account = self._distiller(
                    "adaptive",
                    actor,
                    a * 1000 + j,
                    rng,
                    content=content,
                    rate=tactic.calls_per_day * (0.15 if slow else 1.0) * self._multiplier(rng, 0.4),
                    first_day=start,
                    last_day=end,
                    benign_looking=slow or variant == "benign_mix",
                    variant=variant,
                    reasoning_share=0.6 if content == "cot_extraction" else 0.0,
                )
                self._adversary_record(account, rng, aged=slow)


def _default_of(spec: Any) -> Callable[[], Any]:
    if spec.default_factory is not dataclasses.MISSING:
        factory: Callable[[], Any] = spec.default_factory
        return factory
    return lambda: spec.default


_FIELD_DEFAULTS = {f.name: _default_of(f) for f in dataclasses.fields(SimAccount)}


def build_accounts(scenario: Scenario, pools: Pools, seed: int) -> ScenarioBuilder:
    builder = ScenarioBuilder(scenario, pools, seed)
    for name, population in scenario.populations().items():
        builder.benign(name, population)
    for name, tactic in scenario.tactics().items():
        builder.tactic(name, tactic)
    if scenario.careful:
        builder.take_cover()
    return builder


def _open_events(out: Path, compress: bool, stack: contextlib.ExitStack) -> tuple[Path, BinaryIO]:
    if compress:
        path = out / "events.jsonl.gz"
        raw = stack.enter_context(path.open("wb"))
        # mtime=0 and no file name in the header: the same calls give byte-identical .gz files.
        # Level 1: level 6 is 4x slower (it would dominate generation) for a 20% smaller file.
        zipped = stack.enter_context(
            gzip.GzipFile(filename="", fileobj=raw, mode="wb", compresslevel=1, mtime=0)
        )
        return path, zipped  # type: ignore[return-value]
    path = out / "events.jsonl"
    return path, stack.enter_context(path.open("wb", buffering=1 << 20))


def generate(
    scenario: Scenario,
    *,
    seed: int,
    split: str,
    out: Path,
    corpus_root: Path | None = None,
    compress: bool = False,
    progress: Callable[[str], None] | None = None,
) -> RunResult:
    started = time.perf_counter()
    corpus = load_corpus(corpus_root)
    pools = build_pools(corpus, split)
    builder = build_accounts(scenario, pools, seed)
    accounts = builder.accounts
    traffic = Traffic(accounts, pools, scenario.start, seed)
    out.mkdir(parents=True, exist_ok=True)
    calls_by_account = Counter[int]()
    n_calls = 0
    stack = contextlib.ExitStack()
    events_path, handle = _open_events(out, compress, stack)
    pending: list[tuple[float, int, int]] = []

    def write(batch: list[tuple[float, int, int]]) -> None:
        nonlocal n_calls
        lines = []
        for t, index, turn in batch:
            account = accounts[index]
            if not account.first_day * 86_400.0 <= t < account.last_day * 86_400.0:
                continue  # local time zones and sessions can spill over the account's UTC days
            n_calls += 1
            lines.append(to_json_line(traffic.build(f"e-{n_calls:09d}", t, account, turn)))
            calls_by_account[index] += 1
            if len(lines) >= 4096:
                handle.write(b"\n".join(lines) + b"\n")
                lines.clear()
        if lines:
            handle.write(b"\n".join(lines) + b"\n")

    try:
        for day in range(scenario.days):
            for account in accounts:
                traffic.plan_day(account, day, pending)
            pending.sort()
            # a later day's plan can reach back at most PLAN_REACH_BACK (local time zones east of UTC),
            # so everything before that is final and can be written in arrival order
            cut = bisect.bisect_left(pending, ((day + 1) * 86_400.0 - PLAN_REACH_BACK, -1, -1))
            write(pending[:cut])
            del pending[:cut]
            if progress:
                progress(f"day {day + 1}/{scenario.days}: {n_calls:,} calls")
        write(pending)
    finally:
        stack.close()
    _write_accounts(out, accounts)
    _write_labels(out, accounts)
    seconds = time.perf_counter() - started
    summary = _summary(
        scenario, seed, split, corpus, pools, builder, calls_by_account, n_calls, events_path, seconds
    )
    (out / "scenario.yaml").write_text(
        yaml.safe_dump(scenario_to_data(scenario), sort_keys=False, allow_unicode=True), encoding="utf-8"
    )
    (out / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return RunResult(out=out, calls=n_calls, accounts=len(accounts), seconds=seconds, summary=summary)


def _write_accounts(out: Path, accounts: list[SimAccount]) -> None:
    with (out / "accounts.jsonl").open("wb") as handle:
        for account in accounts:
            handle.write(to_json_line(Account(account_id=account.account_id, **account.record)) + b"\n")


def _write_labels(out: Path, accounts: list[SimAccount]) -> None:
    with (out / "labels.jsonl").open("wb") as handle:
        for account in accounts:
            label = Label(
                account_id=account.account_id,
                label=account.label,
                actor=account.actor,
                tactic=account.population,
                attack_share=account.attack_share,
            )
            handle.write(to_json_line(label) + b"\n")


def _summary(
    scenario: Scenario,
    seed: int,
    split: str,
    corpus: Any,
    pools: Pools,
    builder: ScenarioBuilder,
    calls_by_account: Counter[int],
    n_calls: int,
    events_path: Path,
    seconds: float,
) -> dict[str, Any]:
    accounts = builder.accounts
    groups: dict[str, dict[str, Any]] = {}
    for account in accounts:
        key = account.population
        group = groups.setdefault(
            key,
            {"label": account.label, "accounts": 0, "calls": 0, "actors": set(), "max_calls_per_day": 0.0},
        )
        group["accounts"] += 1
        calls = calls_by_account[account.index]
        group["calls"] += calls
        active = max(1, account.last_day - account.first_day)
        group["max_calls_per_day"] = max(group["max_calls_per_day"], calls / active)
        if account.actor:
            group["actors"].add(account.actor)
    for group in groups.values():
        group["actors"] = len(group["actors"])
        group["max_calls_per_day"] = round(group["max_calls_per_day"], 1)
    shares = Counter(str(a.attack_share) for a in accounts if a.attack_share is not None)
    hydra_rates = [
        calls_by_account[a.index] / max(1, a.last_day - a.first_day)
        for a in accounts
        if a.population == "hydra"
    ]
    return {
        "scenario": scenario.name,
        "resolved_scenario": scenario_to_data(scenario),
        "seed": seed,
        "split": split,
        "corpus": "shipped sample" if corpus.root.name == "sample" else str(corpus.root),
        "start": scenario.start.isoformat().replace("+00:00", "Z"),
        "days": scenario.days,
        "calls": n_calls,
        "accounts": len(accounts),
        "benign_accounts": sum(1 for a in accounts if a.label == "benign"),
        "distiller_accounts": sum(1 for a in accounts if a.label == "distiller"),
        "actors": len(builder.actors),
        "populations": {k: v for k, v in sorted(groups.items()) if v["label"] == "benign"},
        "tactics": {k: v for k, v in sorted(groups.items()) if v["label"] == "distiller"},
        "router_keys_per_share": dict(sorted(shares.items())),
        "hydra_max_calls_per_account_day": round(max(hydra_rates), 1) if hydra_rates else None,
        "prompt_pools": pools.counts(),
        "events_file": events_path.name,
        "generation_seconds": round(seconds, 1),
        "actor_details": sorted(
            (
                ({k: v for k, v in d.items() if k != "accounts"} | {"accounts": len(d["accounts"])})
                for d in builder.actors.values()
            ),
            key=lambda d: str(d["actor"]),
        ),
    }


def format_summary(summary: dict[str, Any]) -> str:
    """The human-readable table `distillguard sim` prints."""
    lines = [
        f"scenario {summary['scenario']} (seed {summary['seed']}, split {summary['split']}, corpus: "
        f"{summary['corpus']}): {summary['days']} days from {summary['start']}",
        f"{summary['calls']:,} calls, {summary['accounts']:,} accounts "
        f"({summary['benign_accounts']:,} benign, {summary['distiller_accounts']:,} distiller, "
        f"{summary['actors']} actors), generated in {summary['generation_seconds']} s",
        "",
        f"{'population / tactic':<26}{'label':<11}{'accounts':>9}{'actors':>8}{'calls':>11}{'max/day':>9}",
    ]
    for section in ("populations", "tactics"):
        for name, g in summary[section].items():
            lines.append(
                f"{name:<26}{g['label']:<11}{g['accounts']:>9,}{g['actors']:>8}{g['calls']:>11,}"
                f"{g['max_calls_per_day']:>9.0f}"
            )
    if summary["router_keys_per_share"]:
        shares = ", ".join(f"{k}: {v}" for k, v in summary["router_keys_per_share"].items())
        lines.append(f"router keys per attack share: {shares}")
    links = Counter("+".join(d["links"]) for d in summary["actor_details"] if "links" in d)
    if links:
        lines.append(
            "careful actors by link kept: " + ", ".join(f"{k}: {v}" for k, v in sorted(links.items()))
        )
    if summary["hydra_max_calls_per_account_day"] is not None:
        lines.append(
            f"hydra: busiest account averages {summary['hydra_max_calls_per_account_day']} calls/day"
        )
    return "\n".join(lines)
