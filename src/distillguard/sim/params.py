"""Request parameters (temperature, top_p, max_tokens, n) as a client's habit.

Real API traffic mostly carries the parameters its client code hard-wires: many callers never set
temperature, apps fix one, developers try a few values, and some budget max_tokens per kind of
request. A habit is drawn once per account from its population's distribution and applied to each
call with the call's prompt kind. A careful distiller draws its habit with the SAME function and a
benign population's name, so its parameters cannot tell it apart.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from distillguard.sim.kinds import BUDGET


@dataclass(frozen=True, slots=True)
class ParamHabit:
    temperature: float | None = None  # None: never sent (the server default applies)
    top_p: float | None = None
    max_tokens: int | None = None  # a fixed budget, or None
    budget_per_kind: bool = False  # max_tokens from the kind of request instead (BUDGET)
    n: int = 1  # samples asked for on the calls that ask for several
    n_share: float = 0.0  # share of calls that ask for n samples
    json_mode: bool = False  # response_format json_object (classification pipelines)


def _maybe(rng: random.Random, p: float, values: tuple[Any, ...]) -> Any:
    return rng.choice(values) if rng.random() < p else None


def draw_habit(population: str, rng: random.Random) -> ParamHabit:
    """The parameter habit of one account of a benign population."""
    if population in ("casual", "non_english", "red_team"):
        # chat front-ends and hobby scripts: mostly defaults
        several = rng.random() < 0.03
        return ParamHabit(
            temperature=_maybe(rng, 0.3, (0.7, 0.8, 1.0, 0.5)),
            top_p=_maybe(rng, 0.05, (0.9, 0.95, 1.0)),
            max_tokens=_maybe(rng, 0.35, (1024, 2048, 4096, 800)),
            n=2 if several else 1,
            n_share=rng.uniform(0.1, 0.4) if several else 0.0,
        )
    if population == "developer":
        per_kind = rng.random() < 0.3
        several = rng.random() < 0.1  # sampling a few candidates (best-of, self-consistency)
        return ParamHabit(
            temperature=_maybe(rng, 0.65, (0.0, 0.2, 0.3, 0.5, 0.7, 0.7, 1.0)),
            top_p=_maybe(rng, 0.15, (0.9, 0.95, 1.0)),
            max_tokens=None if per_kind else _maybe(rng, 0.55, (256, 512, 1024, 2048, 4096, 8192)),
            budget_per_kind=per_kind,
            n=rng.choice((2, 3, 4, 5)) if several else 1,
            n_share=rng.uniform(0.1, 0.6) if several else 0.0,
        )
    if population == "app_backend":
        per_kind = rng.random() < 0.15
        several = rng.random() < 0.05  # "show me alternatives" features
        return ParamHabit(
            temperature=_maybe(rng, 0.85, (0.0, 0.3, 0.5, 0.7, 0.7, 1.0)),
            top_p=_maybe(rng, 0.2, (0.9, 0.95, 1.0)),
            max_tokens=None if per_kind else _maybe(rng, 0.9, (300, 500, 800, 1000, 1500, 2048)),
            budget_per_kind=per_kind,
            n=rng.choice((2, 3)) if several else 1,
            n_share=rng.uniform(0.2, 0.6) if several else 0.0,
        )
    if population == "tutoring":
        return ParamHabit(
            temperature=_maybe(rng, 0.9, (0.2, 0.3, 0.5)), max_tokens=_maybe(rng, 0.8, (800, 1000, 1500))
        )
    if population == "batch_classification":
        return ParamHabit(
            temperature=0.0 if rng.random() < 0.95 else 0.1,
            max_tokens=rng.choice((60, 100, 150, 256)),
            json_mode=rng.random() < 0.8,
        )
    if population == "eval_harness":
        several = rng.random() < 0.15  # pass@k style sampling
        return ParamHabit(
            temperature=rng.choice((0.0, 0.0, 0.7)),
            max_tokens=rng.choice((1024, 2048, 4096)),
            n=rng.choice((3, 5)) if several else 1,
            n_share=0.5 if several else 0.0,
        )
    if population == "sanctioned_distillation":
        several = rng.random() < 0.3
        return ParamHabit(
            temperature=rng.choice((0.6, 0.7, 1.0)),
            top_p=_maybe(rng, 0.4, (0.95, 1.0)),
            max_tokens=rng.choice((2048, 4096, 8192)),
            n=4 if several else 1,
            n_share=0.7 if several else 0.0,
        )
    raise ValueError(f"no parameter habit for population {population!r}")


def request_params(habit: ParamHabit, kind: str, rng: random.Random) -> dict[str, Any]:
    """The parameters one call of an account with `habit` carries for a prompt of `kind`."""
    params: dict[str, Any] = {}
    if habit.temperature is not None:
        params["temperature"] = habit.temperature
    if habit.top_p is not None:
        params["top_p"] = habit.top_p
    if habit.budget_per_kind:
        params["max_tokens"] = BUDGET[kind]
    elif habit.max_tokens is not None:
        params["max_tokens"] = habit.max_tokens
    if habit.n > 1 and rng.random() < habit.n_share:
        params["n"] = habit.n
    if habit.json_mode:
        params["response_format"] = {"type": "json_object"}
    return params
