"""The simulator: spec-conformant files, every population and tactic, determinism, split hygiene."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

from distillguard.cli import main
from distillguard.corpus import load_corpus
from distillguard.events.call_view import view_of
from distillguard.events.model import account_decoder, event_decoder, label_decoder
from distillguard.sim.generate import build_accounts, generate
from distillguard.sim.pools import build_pools
from distillguard.sim.scenario import Benign, ScenarioError, load_preset, load_scenario

TACTICS = {
    "synthetic_generation",
    "response_harvest",
    "cot_extraction",
    "rl_grading",
    "logit_probe",
    "hydra",
    "router_mixed",
    "recidivist",
    "adaptive",
}


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("small")
    generate(load_preset("small"), seed=7, split="test", out=out)
    return out


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_small_preset_files_decode_with_the_spec_structs(small: Path) -> None:
    events = [event_decoder.decode(line) for line in (small / "events.jsonl").read_bytes().splitlines()]
    accounts = [account_decoder.decode(line) for line in (small / "accounts.jsonl").read_bytes().splitlines()]
    labels = [label_decoder.decode(line) for line in (small / "labels.jsonl").read_bytes().splitlines()]
    assert 30_000 <= len(events) <= 80_000
    assert len({e.event_id for e in events}) == len(events)
    assert [e.ts for e in events] == sorted(e.ts for e in events)  # in arrival order
    assert (
        {a.account_id for a in accounts}
        == {lab.account_id for lab in labels}
        >= {e.account_id for e in events}
    )
    assert all(lab.label in ("benign", "distiller") for lab in labels)
    sanctioned = {a.account_id for a in accounts if a.sanctioned_distillation}
    assert sanctioned == {lab.account_id for lab in labels if lab.tactic == "sanctioned_distillation"}
    assert all(lab.label == "benign" for lab in labels if lab.account_id in sanctioned)
    assert all((small / name).is_file() for name in ("scenario.yaml", "summary.json"))


def test_every_population_and_tactic_is_present_with_calls(small: Path) -> None:
    labels = [label_decoder.decode(line) for line in (small / "labels.jsonl").read_bytes().splitlines()]
    calls = Counter(
        event_decoder.decode(line).account_id for line in (small / "events.jsonl").read_bytes().splitlines()
    )
    by_tactic: Counter[str] = Counter()
    for lab in labels:
        by_tactic[lab.tactic] += calls[lab.account_id]
    assert set(Benign.__struct_fields__) | TACTICS == set(by_tactic)
    assert all(count > 0 for count in by_tactic.values()), by_tactic
    shares = {lab.attack_share for lab in labels if lab.tactic == "router_mixed"}
    assert shares == {0.05, 0.10, 0.25, 0.50}
    hydra_actors = Counter(lab.actor for lab in labels if lab.tactic == "hydra")
    assert all(n >= 10 for n in hydra_actors.values())
    assert all(lab.actor for lab in labels if lab.label == "distiller")


def test_traffic_carries_what_the_detectors_look_for(small: Path) -> None:
    views = [
        view_of(event_decoder.decode(line)) for line in (small / "events.jsonl").read_bytes().splitlines()
    ]
    assert any(v.logprobs and v.max_tokens == 1 for v in views)
    assert any(v.logit_bias_size > 0 for v in views)
    assert any(v.reasoning_text for v in views)
    assert any(v.endpoint == "/v1/completions" for v in views)  # Magpie pre-query templates
    assert any(v.end_user for v in views)
    assert any(v.client_router for v in views)
    assert len({v.client_user_agent for v in views}) >= 10


def test_same_seed_gives_byte_identical_files(small: Path, tmp_path: Path) -> None:
    generate(load_preset("small"), seed=7, split="test", out=tmp_path)
    for name in ("events.jsonl", "accounts.jsonl", "labels.jsonl", "scenario.yaml"):
        assert _sha(tmp_path / name) == _sha(small / name), name


def test_gzip_output_is_deterministic(tmp_path: Path) -> None:
    scenario = load_preset("small")
    scenario.days = 2
    generate(scenario, seed=3, split="dev", out=tmp_path / "a", compress=True)
    generate(scenario, seed=3, split="dev", out=tmp_path / "b", compress=True)
    assert _sha(tmp_path / "a" / "events.jsonl.gz") == _sha(tmp_path / "b" / "events.jsonl.gz")
    generate(scenario, seed=4, split="dev", out=tmp_path / "c", compress=True)
    assert _sha(tmp_path / "a" / "events.jsonl.gz") != _sha(tmp_path / "c" / "events.jsonl.gz")


def test_prompts_come_only_from_the_chosen_split(small: Path) -> None:
    corpus = load_corpus()
    test_texts = {i.text for i in corpus.items(split="test")}
    train_only = {i.text for i in corpus.items(split="train")} - test_texts
    prompts = {
        view_of(event_decoder.decode(line)).prompt
        for line in (small / "events.jsonl").read_bytes().splitlines()
    }
    assert not prompts & train_only
    assert len(prompts & test_texts) > 100


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        ("name: x\nstart: 2026-02-02T00:00:00Z\ndays: 0\nbenign: {}\nadversaries: {}\n", "field 'days'"),
        (
            "name: x\nstart: 2026-02-02T00:00:00Z\ndays: 7\nbenign: {casual: {accounts: -3, calls_per_day: 2}}\n"
            "adversaries: {}\n",
            "field 'benign.casual.accounts'",
        ),
        (
            "name: x\nstart: 2026-02-02T00:00:00Z\ndays: 7\nbenign: {}\n"
            "adversaries: {router_mixed: {actors: 2, calls_per_day: 5, shares: [0.05, 1.5]}}\n",
            "field 'adversaries.router_mixed.shares",
        ),
        (
            "name: x\nstart: 2026-02-02T00:00:00Z\ndays: 7\nbenign: {tourists: {accounts: 1}}\nadversaries: {}\n",
            "tourists",
        ),
        (
            "name: x\nstart: 2026-02-02T00:00:00Z\ndays: 7\nbenign: {}\nadversaries: {hydra: {actors: 1, calls_per_day: 2}}\n",
            "campaign_sizes",
        ),
        ("name: [unclosed\n", "not valid YAML"),
        (
            "name: x\nstart: 2026-02-02T00:00:00Z\ndays: 7\ncareful: maybe\nbenign: {}\nadversaries: {}\n",
            "field 'careful'",
        ),
        (
            "name: x\nstart: 2026-02-02T00:00:00Z\ndays: 7\nbenign: {}\n"
            "adversaries: {rl_grading: {actors: 1, calls_per_day: 5, start_day: 3, end_day: 9}}\n",
            "adversaries.rl_grading: active window [3, 9) is outside the 7 days",
        ),
        (
            "name: x\nstart: 2026-02-02T00:00:00Z\ndays: 7\nbenign: {casual: {accounts: 2, calls_per_day: 2, "
            "start_day: 4, end_day: 2}}\nadversaries: {}\n",
            "field 'benign.casual': end_day (2) must be after start_day (4)",
        ),
    ],
)
def test_scenario_errors_name_the_file_and_field(tmp_path: Path, yaml_text: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml_text, encoding="utf-8")
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    assert str(path) in str(caught.value)
    assert message in str(caught.value)


def test_presets_are_sized_for_the_benchmark() -> None:
    default = load_preset("default")
    benign = default.populations()
    assert sum(p.accounts for p in benign.values()) >= 5000
    hard = (
        "app_backend",
        "batch_classification",
        "eval_harness",
        "tutoring",
        "sanctioned_distillation",
        "red_team",
    )
    assert all(benign[name].accounts >= 300 for name in hard)
    router = default.tactics()["router_mixed"]
    assert router.actors >= 20 and len(router.shares) == 4
    hydra = default.tactics()["hydra"]
    assert min(hydra.campaign_sizes) >= 10 and max(hydra.campaign_sizes) <= 500


def test_careful_presets_are_sized_for_the_benchmark() -> None:
    careful = load_preset("careful")
    assert careful.careful and careful.days == 14
    assert set(careful.populations()) == set(Benign.__struct_fields__)
    assert all(p.accounts >= 200 for p in careful.populations().values())
    assert set(careful.tactics()) == TACTICS
    assert len(careful.tactics()["router_mixed"].shares) == 4
    builder = build_accounts(careful, build_pools(load_corpus(), "test"), 1)
    assert len(builder.actors) >= 150
    small = load_preset("careful-small")
    assert small.careful and set(small.tactics()) == TACTICS


def test_careful_distillers_take_a_benign_profile_and_keep_one_or_two_links() -> None:
    builder = build_accounts(load_preset("careful-small"), build_pools(load_corpus(), "test"), 3)
    distillers = [a for a in builder.accounts if a.label == "distiller"]
    cover_timings = {
        a.timing for a in builder.accounts if a.population in ("casual", "developer", "app_backend")
    }
    assert {a.timing for a in distillers} <= cover_timings
    assert all(a.habit is not None and not a.rotate_ips and a.sync_group is None for a in distillers)
    links = [tuple(d["links"]) for d in builder.actors.values()]
    assert all(1 <= len(x) <= 2 for x in links)
    assert set(links) >= {("content",), ("payment",)}
    # an actor without a payment link shares no payment fingerprint between its accounts
    by_id = {a.account_id: a for a in builder.accounts}
    for details in builder.actors.values():
        payments = {by_id[a].record["payment_fingerprint"] for a in details["accounts"]}
        if "payment" not in details["links"]:
            assert len(payments) == len(details["accounts"])


def test_cli_prints_the_summary_and_rejects_a_bad_scenario(tmp_path: Path) -> None:
    scenario = tmp_path / "tiny.yaml"
    scenario.write_text(
        "name: tiny\nstart: 2026-02-02T00:00:00Z\ndays: 2\n"
        "benign: {casual: {accounts: 5, calls_per_day: 4}, batch_classification: {accounts: 1, calls_per_day: 50}}\n"
        "adversaries: {rl_grading: {actors: 1, calls_per_day: 20}}\n",
        encoding="utf-8",
    )
    result = CliRunner().invoke(
        main, ["sim", "--scenario", str(scenario), "--seed", "2", "--out", str(tmp_path / "o")]
    )
    assert result.exit_code == 0, result.output
    assert "batch_classification" in result.output and "rl_grading" in result.output
    scenario.write_text(
        "name: tiny\nstart: 2026-02-02T00:00:00Z\ndays: 2\nbenign: {}\nadversaries: {}\nextra: 1\n"
    )
    result = CliRunner().invoke(main, ["sim", "--scenario", str(scenario), "--out", str(tmp_path / "p")])
    assert result.exit_code != 0 and "extra" in result.output


def test_output_does_not_depend_on_pythonhashseed(tmp_path: Path) -> None:
    scenario = tmp_path / "tiny.yaml"
    scenario.write_text(
        "name: tiny\nstart: 2026-02-02T00:00:00Z\ndays: 2\n"
        "benign: {casual: {accounts: 8, calls_per_day: 5}, app_backend: {accounts: 1, calls_per_day: 40, end_users: 30}}\n"
        "adversaries: {hydra: {actors: 1, campaign_sizes: [10], calls_per_day: 4}, "
        "router_mixed: {actors: 1, shares: [0.25], calls_per_day: 30, end_users: 20}}\n",
        encoding="utf-8",
    )
    digests = set()
    for hash_seed in ("1", "2"):
        out = tmp_path / f"out{hash_seed}"
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        cmd = [
            sys.executable,
            "-c",
            "from distillguard.cli import main; main()",
            "sim",
            "--scenario",
            str(scenario),
            "--seed",
            "5",
            "--out",
            str(out),
        ]
        subprocess.run(cmd, check=True, env=env, capture_output=True)
        digests.add(tuple(_sha(out / name) for name in ("events.jsonl", "accounts.jsonl", "labels.jsonl")))
    assert len(digests) == 1


def test_naive_rate_limits_cannot_separate_hydras_from_bulk_customers(small: Path) -> None:
    tactic = {
        lab.account_id: lab.tactic
        for lab in (label_decoder.decode(line) for line in (small / "labels.jsonl").read_bytes().splitlines())
    }
    per_day: Counter[tuple[str, object]] = Counter()
    for line in (small / "events.jsonl").read_bytes().splitlines():
        event = event_decoder.decode(line)
        per_day[(event.account_id, event.ts.date())] += 1
    busiest: dict[str, int] = {}
    for (account, _), calls in per_day.items():
        busiest[account] = max(busiest.get(account, 0), calls)
    hydra = max(n for a, n in busiest.items() if tactic[a] == "hydra")
    bulk = [n for a, n in busiest.items() if tactic[a] in ("batch_classification", "app_backend")]
    assert hydra < 30  # every hydra account stays under a naive per-account daily limit
    # while a limit low enough to catch them would block most legitimate bulk customers
    assert sum(n > 2 * hydra for n in bulk) >= len(bulk) // 2


def test_active_windows_bound_when_accounts_call(tmp_path: Path) -> None:
    scenario = tmp_path / "window.yaml"
    scenario.write_text(
        "name: window\nstart: 2026-02-02T00:00:00Z\ndays: 6\n"
        "benign: {casual: {accounts: 6, calls_per_day: 6}}\n"
        "adversaries: {rl_grading: {actors: 2, calls_per_day: 30, start_day: 2, end_day: 4}}\n",
        encoding="utf-8",
    )
    generate(load_scenario(scenario), seed=1, split="test", out=tmp_path / "o")
    tactic = {
        lab.account_id: lab.tactic
        for lab in (
            label_decoder.decode(x) for x in (tmp_path / "o" / "labels.jsonl").read_bytes().splitlines()
        )
    }
    days = {
        (event.ts.date() - load_scenario(scenario).start.date()).days
        for event in (
            event_decoder.decode(x) for x in (tmp_path / "o" / "events.jsonl").read_bytes().splitlines()
        )
        if tactic[event.account_id] == "rl_grading"
    }
    assert days and days <= {2, 3}
