"""A traffic scenario as data: benign populations and adversary tactics with sizes, rates and shares.

Scenarios are YAML files (the presets live in sim/presets/); they are validated on load and every
error names the file and the field, e.g. `my.yaml: field 'benign.casual.accounts': Expected int >= 0`.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import msgspec
import yaml
from msgspec import Meta

PRESETS = ("small", "default", "large", "careful-small", "careful")
PRESET_DIR = Path(str(resources.files("distillguard.sim") / "presets"))

NonNegInt = Annotated[int, Meta(ge=0)]
PosInt = Annotated[int, Meta(ge=1)]
Rate = Annotated[float, Meta(gt=0, le=100_000)]
Share = Annotated[float, Meta(gt=0, lt=1)]


def _check_window(start_day: int, end_day: int | None) -> None:
    if end_day is not None and end_day <= start_day:
        raise ValueError(f"end_day ({end_day}) must be after start_day ({start_day})")


class Population(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A benign population: how many accounts and how busy each is."""

    accounts: NonNegInt
    calls_per_day: Rate  # mean over an account's active days
    end_users: NonNegInt = 0  # distinct end users per account (apps, tutoring, routers)
    start_day: NonNegInt = 0  # active window within the scenario: [start_day, end_day)
    end_day: PosInt | None = None  # None: to the end of the scenario

    def __post_init__(self) -> None:
        _check_window(self.start_day, self.end_day)


class Benign(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    casual: Population | None = None
    developer: Population | None = None
    non_english: Population | None = None
    app_backend: Population | None = None
    batch_classification: Population | None = None
    eval_harness: Population | None = None
    tutoring: Population | None = None
    sanctioned_distillation: Population | None = None
    red_team: Population | None = None


class Tactic(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """An adversary tactic: how many actors, how many accounts each, and how busy each account is."""

    actors: NonNegInt
    calls_per_day: Rate
    accounts_per_actor: PosInt = 1
    campaign_sizes: list[PosInt] = []  # hydra: accounts per campaign (one actor each)
    shares: list[Share] = []  # router_mixed: adversarial share of a router key's calls
    end_users: NonNegInt = 0  # router_mixed: legitimate end users behind each key
    start_day: NonNegInt = 0  # active window within the scenario: [start_day, end_day)
    end_day: PosInt | None = None  # None: to the end of the scenario

    def __post_init__(self) -> None:
        _check_window(self.start_day, self.end_day)
        if len(set(self.shares)) != len(self.shares):
            raise ValueError("shares must be distinct")


class Adversaries(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    synthetic_generation: Tactic | None = None
    response_harvest: Tactic | None = None
    cot_extraction: Tactic | None = None
    rl_grading: Tactic | None = None
    logit_probe: Tactic | None = None
    hydra: Tactic | None = None
    router_mixed: Tactic | None = None
    recidivist: Tactic | None = None
    adaptive: Tactic | None = None

    def __post_init__(self) -> None:
        if self.hydra is not None and not self.hydra.campaign_sizes:
            raise ValueError("hydra needs campaign_sizes (accounts per campaign)")
        if self.router_mixed is not None and not self.router_mixed.shares:
            raise ValueError("router_mixed needs shares")
        if self.recidivist is not None and self.recidivist.accounts_per_actor < 2:
            raise ValueError("recidivist needs accounts_per_actor >= 2 (early and returning accounts)")


class Scenario(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: str
    start: datetime
    days: Annotated[int, Meta(ge=2, le=366)]
    model: str = "frontier-1"
    reasoning_model: str = "frontier-reasoner-1"
    release_days: list[NonNegInt] = []  # days with a model release: evaluation customers burst then
    # careful adversary: distiller accounts look like benign developers, app backends and casual
    # users in everything but what they ask (docs/simulator.md, "Careful mode")
    careful: bool = False
    benign: Benign
    adversaries: Adversaries

    def __post_init__(self) -> None:
        if self.start.tzinfo is None:
            raise ValueError("start must carry a time zone, e.g. 2026-02-02T00:00:00Z")
        self.start = self.start.astimezone(UTC)
        for day in self.release_days:
            if day >= self.days:
                raise ValueError(f"release day {day} is outside the {self.days} days of the scenario")
        windows: list[tuple[str, Population | Tactic]] = [
            *((f"benign.{n}", p) for n, p in self.populations().items()),
            *((f"adversaries.{n}", t) for n, t in self.tactics().items()),
        ]
        for name, spec in windows:
            if spec.start_day >= self.days or (spec.end_day or 0) > self.days:
                raise ValueError(
                    f"{name}: active window [{spec.start_day}, {spec.end_day}) is outside the "
                    f"{self.days} days of the scenario"
                )

    def populations(self) -> dict[str, Population]:
        return {n: p for n in Benign.__struct_fields__ if (p := getattr(self.benign, n)) is not None}

    def tactics(self) -> dict[str, Tactic]:
        return {
            n: t for n in Adversaries.__struct_fields__ if (t := getattr(self.adversaries, n)) is not None
        }


class ScenarioError(ValueError):
    """A scenario file that cannot be used; the message names the file and the field."""


_AT = re.compile(r"^(?P<msg>.*?) - at `\$\.?(?P<path>[^`]*)`$", re.DOTALL)


def scenario_from_data(data: Any, where: str) -> Scenario:
    try:
        return msgspec.convert(data, Scenario, strict=False)
    except msgspec.ValidationError as error:
        text = str(error)
        match = _AT.match(text)
        if match:
            raise ScenarioError(f"{where}: field '{match['path']}': {match['msg']}") from None
        raise ScenarioError(f"{where}: {text}") from None


def load_scenario(path: Path) -> Scenario:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ScenarioError(f"{path}: not valid YAML ({error})") from None
    except OSError as error:
        raise ScenarioError(f"{path}: cannot read ({error.strerror})") from None
    if not isinstance(data, dict):
        raise ScenarioError(
            f"{path}: a scenario is a mapping with fields name, start, days, benign, adversaries"
        )
    return scenario_from_data(data, str(path))


def load_preset(name: str) -> Scenario:
    if name not in PRESETS:
        raise ScenarioError(f"unknown preset {name!r}; allowed: {', '.join(PRESETS)}")
    return load_scenario(PRESET_DIR / f"{name}.yaml")


def scenario_to_data(scenario: Scenario) -> dict[str, Any]:
    """The resolved scenario as plain data (written next to the generated traffic)."""
    data: dict[str, Any] = msgspec.to_builtins(scenario)
    return data
