"""Request parameters are per-account habits of a population, applied per prompt kind."""

from __future__ import annotations

import random

import pytest

from distillguard.sim.kinds import BUDGET
from distillguard.sim.params import ParamHabit, draw_habit, request_params

POPULATIONS = (
    "casual",
    "developer",
    "non_english",
    "app_backend",
    "batch_classification",
    "eval_harness",
    "tutoring",
    "sanctioned_distillation",
    "red_team",
)


@pytest.mark.parametrize(
    ("habit", "kind", "expected"),
    [
        (ParamHabit(), "chat", {}),
        (ParamHabit(temperature=0.0, max_tokens=512), "code", {"temperature": 0.0, "max_tokens": 512}),
        (ParamHabit(budget_per_kind=True), "classification", {"max_tokens": BUDGET["classification"]}),
        (ParamHabit(top_p=0.9, n=3, n_share=1.0), "chat", {"top_p": 0.9, "n": 3}),
        (ParamHabit(json_mode=True), "classification", {"response_format": {"type": "json_object"}}),
    ],
)
def test_request_params(habit: ParamHabit, kind: str, expected: dict[str, object]) -> None:
    assert request_params(habit, kind, random.Random(0)) == expected


@pytest.mark.parametrize("population", POPULATIONS)
def test_every_population_draws_a_habit(population: str) -> None:
    habits = [draw_habit(population, random.Random(f"{population}{i}")) for i in range(200)]
    assert all(h.n >= 1 and 0 <= h.n_share <= 1 for h in habits)


def test_benign_developers_sometimes_ask_for_several_samples() -> None:
    # n > 1 is not a distiller's mark: some developers and evaluation customers ask for it too
    for population in ("developer", "eval_harness"):
        habits = [draw_habit(population, random.Random(f"{population}{i}")) for i in range(500)]
        assert 0.03 < sum(h.n > 1 for h in habits) / len(habits) < 0.3


def test_unknown_population_is_an_error() -> None:
    with pytest.raises(ValueError, match="tourists"):
        draw_habit("tourists", random.Random(0))
