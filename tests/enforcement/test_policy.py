"""The policy file: the packaged default loads, and every mistake is named by file and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from distillguard.enforcement.policy import PolicyError, default_policy, load_policy
from distillguard.signals import registry


def test_default_policy_loads_and_names_only_known_signals() -> None:
    policy = default_policy()
    assert policy.mode == "enforce" and policy.rules
    load_policy(
        Path(default_policy.__code__.co_filename).with_name("default_policy.yaml"), set(registry.names())
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "rules:\n  - {name: a, signal: cot_extraction, min_score: 1.5, action: block}\n",
            "rules[0]: min_score 1.5 outside [0, 1]",
        ),
        ("rules:\n  - {name: a, signal: cot_extraction, min_score: 0.5, action: nuke}\n", "rules[0].action"),
        (
            "rules:\n  - {name: a, signal: cot_extraction, action: block}\n",
            "rules[0]: Object missing required field `min_score`",
        ),
        (
            "rules:\n  - {name: a, signal: nope, min_score: 0.5, action: block}\n",
            "rules[0].signal: unknown signal 'nope'",
        ),
        (
            "rules:\n  - {name: a, signal: cot_extraction, min_score: 0.5, action: block}\n"
            "  - {name: a, signal: logit_probe, min_score: 0.5, action: flag}\n",
            "rules[1].name: duplicate rule name 'a'",
        ),
        ("mode: loud\n", "mode"),
        ("tiers:\n  free: {max_n: many}\n", "tiers.free.max_n"),
        ("default_tier: gold\n", "default_tier: 'gold' is not one of tiers"),
        ("tiers:\n  free: {include: [foo]}\n", "tiers.free: include[0]: unknown include entry 'foo'"),
        ("tiers:\n  free: {max_n: 0}\n", "tiers.free: max_n must be >= 1"),
        ("tiers:\n  free: {echo: sometimes}\n", "tiers.free.echo"),
        (
            "requests: {unknown_parameters: maybe}\n",
            "requests.unknown_parameters: Invalid enum value 'maybe'",
        ),
        ("requests: {max_depth: 1}\n", "requests: max_depth must be between 2 and 512"),
        ("requests: {pass_parameters: 5}\n", "requests.pass_parameters"),
        ("throttle: {bucket: {rate_per_s: 0, burst: 1}}\n", "throttle.bucket"),
        ("colour: red\n", "Object contains unknown field `colour`"),
        ("rules: [\n", "not valid YAML"),
    ],
)
def test_policy_errors_name_the_file_and_the_field(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    with pytest.raises(PolicyError) as caught:
        load_policy(path, set(registry.names()))
    assert str(caught.value).startswith(f"{path}: ")
    assert message in str(caught.value)
