"""Linking on tiny hand-made populations: what must be merged is, what must not be is not."""

from __future__ import annotations

import hashlib
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from distillguard.events.call_view import CallView
from distillguard.events.model import Account
from distillguard.features.account_window import AccountWindow
from distillguard.linking import (
    CLUSTER_FEATURES,
    Indicator,
    KnownActor,
    LinkConfig,
    LinkConfigError,
    actor_of,
    cluster_features,
    link,
    load_link_config,
)

T0 = datetime(2026, 2, 9, tzinfo=UTC)
WEEK_S = 7 * 86400


def template_text(name: str) -> str:
    """A template's fixed text, as long as real ones and unlike any other name's (letters only: the
    template signal treats digits as a filling)."""
    digest = hashlib.sha256(name.encode()).hexdigest().translate(str.maketrans("0123456789", "ghijklmnop"))
    return " ".join(digest[i : i + 6] for i in range(0, 60, 6))


def window_of(
    times: list[datetime],
    *,
    template: str | None = None,
    template_share: float = 1.0,
    system: str = "",
    ip: str | None = None,
    asn: int | None = None,
    tls: str | None = None,
    fires: float | None = None,
) -> AccountWindow:
    window = AccountWindow()
    rng = random.Random(len(times))
    for i, ts in enumerate(sorted(times)):
        own = template if template and rng.random() < template_share else None
        view = CallView(
            event_id=str(i),
            ts=ts,
            account_id="x",
            client_ip=ip or f"203.0.113.{rng.randrange(255)}",
            client_asn=asn,
            client_tls_fingerprint=tls,
            system_prompt=system,
            prompt=f"{template_text(own)}\n\nInput:\n{rng.random()}" if own else f"prompt {rng.random()}",
        )
        window.observe(view, {"generation_request": fires}, own or f"tpl-{rng.random()}")
    return window


def random_times(seed: int, n: int = 30) -> list[datetime]:
    rng = random.Random(seed)
    return [T0 + timedelta(seconds=rng.uniform(0, WEEK_S)) for _ in range(n)]


def background(n: int = 20) -> dict[str, AccountWindow]:
    """Unrelated accounts active at random times from their own IPs."""
    return {f"benign-{i}": window_of(random_times(1000 + i)) for i in range(n)}


def clustered(clusters) -> list[list[str]]:
    return [c.accounts for c in clusters]


def test_shared_payment_links_two_accounts_and_says_why() -> None:
    windows = background() | {"a": window_of(random_times(1)), "b": window_of(random_times(2))}
    accounts = {
        "a": Account(account_id="a", payment_fingerprint="pf-77"),
        "b": Account(account_id="b", payment_fingerprint="pf-77"),
        "benign-0": Account(account_id="benign-0", payment_fingerprint="pf-01"),
    }
    clusters = link(windows, accounts)
    assert clustered(clusters) == [["a", "b"]]
    assert clusters[0].indicators == {"payment": ["pf-77"]}
    assert "same payment pf-77" in clusters[0].edges[0].evidence
    assert clusters[0].cluster_id.startswith("actor-")


def test_works_without_account_records() -> None:
    assert link(background(5)) == []
    assert link({}) == []


def test_popular_sdk_fingerprint_and_corporate_nat_do_not_link() -> None:
    windows = background()
    # 60 customers all using the same SDK from the same cloud network
    for i in range(60):
        windows[f"sdk-{i}"] = window_of(random_times(200 + i), tls="t13d_openai_python", asn=16509)
    # four colleagues behind one corporate NAT: same sign-up IP, call IP and TLS client
    accounts = {}
    for i in range(4):
        windows[f"corp-{i}"] = window_of(random_times(300 + i), ip="198.51.100.7", asn=64510, tls="t13d_corp")
        accounts[f"corp-{i}"] = Account(account_id=f"corp-{i}", signup_ip="198.51.100.7")
    assert link(windows, accounts) == []


def test_public_eval_template_and_system_prompt_do_not_link() -> None:
    """Customers of a public evaluation send its judge template among their own prompts, and so
    do many other accounts of the run: neither how much they share nor how rare it is links them."""
    windows = {
        f"benign-{i}": window_of(random_times(1000 + i), template="tpl-mtbench-judge", template_share=0.2)
        for i in range(20)
    }
    for i in range(3):
        windows[f"eval-{i}"] = window_of(
            random_times(400 + i, 60),
            template="tpl-mtbench-judge",
            template_share=0.4,
            system="Please act as an impartial judge",
        )
    assert link(windows) == []


def test_synchronised_activity_links_the_hydra_and_not_the_background() -> None:
    rng = random.Random(5)
    bursts = [T0 + timedelta(seconds=rng.uniform(0, WEEK_S)) for _ in range(25)]
    windows = background(30)
    for i in range(3):
        times = [b + timedelta(seconds=rng.uniform(0, 60)) for b in bursts for _ in range(2)]
        windows[f"hydra-{i}"] = window_of(times)
    clusters = link(windows)
    assert clustered(clusters) == [["hydra-0", "hydra-1", "hydra-2"]]
    assert all(e.kind == "sync" for e in clusters[0].edges)
    assert "same 5-minute windows" in clusters[0].edges[0].evidence
    first = min(bursts).replace(minute=min(bursts).minute // 5 * 5, second=0, microsecond=0)
    assert f"e.g. {first:%Y-%m-%d %H:%M}" in clusters[0].edges[0].evidence


def test_always_on_accounts_are_not_synchronised() -> None:
    every_5_min = [T0 + timedelta(minutes=5 * i + 1) for i in range(2 * 288)]
    windows = {"batch-a": window_of(every_5_min), "batch-b": window_of(every_5_min)} | background(5)
    assert link(windows) == []


def test_shared_rare_template_plus_synchronised_timing_links_past_the_pair_limit() -> None:
    rng = random.Random(6)
    bursts = [T0 + timedelta(seconds=rng.uniform(0, WEEK_S)) for _ in range(8)]
    windows = background()
    for i in range(6):
        times = [b + timedelta(seconds=rng.uniform(0, 60)) for b in bursts]
        windows[f"hydra-{i}"] = window_of(times, template="tpl-evol-breadth")
    # the template is held by more accounts than pair_limit: it only corroborates sync pairs
    config = LinkConfig(pair_limit=3)
    clusters = link(windows, config=config)
    assert clustered(clusters) == [[f"hydra-{i}" for i in range(6)]]
    kinds = {e.kind for e in clusters[0].edges}
    assert kinds == {"sync", "template"}
    assert clusters[0].indicators["template"] == ["tpl-evol-breadth"]


def test_payment_shared_by_many_accounts_is_chained() -> None:
    windows = {f"h{i}": window_of(random_times(i, 5)) for i in range(8)}
    accounts = {aid: Account(account_id=aid, payment_fingerprint="pf-card") for aid in windows}
    clusters = link(windows, accounts, config=LinkConfig(pair_limit=3))
    assert clustered(clusters) == [sorted(windows)]
    assert len(clusters[0].edges) == 7


def test_recidivist_joins_the_known_actor() -> None:
    banned_windows = {
        "old-1": window_of(random_times(7), template="tpl-r1-distill", ip="192.0.2.50"),
        "old-2": window_of(random_times(8), template="tpl-r1-distill", ip="192.0.2.50"),
    }
    first = link(banned_windows)
    assert clustered(first) == [["old-1", "old-2"]]
    actor = actor_of(first[0], source="banned 2026-02-01")
    assert Indicator("template", "tpl-r1-distill") in actor.indicators

    windows = background() | {
        "new-1": window_of(random_times(9), template="tpl-r1-distill", ip="192.0.2.50"),
        # tried the same template on a third of its calls: not enough for the actor, nor for new-1
        "lookalike": window_of(random_times(10), template="tpl-r1-distill", template_share=0.3),
    }
    clusters = link(windows, known_actors=[actor])
    assert clustered(clusters) == [["new-1"]]
    recidivist = clusters[0]
    assert recidivist.cluster_id == actor.actor_id and recidivist.known_actors == [actor.actor_id]
    assert any(
        "matches known actor" in e.evidence and "banned 2026-02-01" in e.evidence for e in recidivist.edges
    )


def test_lookalike_alone_does_not_match_a_known_actor() -> None:
    actor = KnownActor(
        "actor-x", frozenset({Indicator("template", "tpl-r1-distill"), Indicator("ip", "192.0.2.50")})
    )
    windows = background() | {"lookalike": window_of(random_times(10), template="tpl-r1-distill")}
    assert link(windows, known_actors=[actor]) == []


def test_ignored_indicator_is_not_evidence() -> None:
    windows = {"a": window_of(random_times(1)), "b": window_of(random_times(2))}
    accounts = {aid: Account(account_id=aid, payment_fingerprint="pf-test-card") for aid in windows}
    config = LinkConfig(ignore=frozenset({Indicator("payment", "pf-test-card")}))
    assert link(windows, accounts, config=config) == []


def test_cluster_features_propagate_to_members() -> None:
    windows = {
        "a": window_of(random_times(1, 10), fires=0.9),
        "b": window_of(random_times(2, 30), fires=0.1),
        "c": window_of(random_times(3, 5)),
    }
    accounts = {aid: Account(account_id=aid, payment_fingerprint="pf-9") for aid in ("a", "b")}
    clusters = link(windows, accounts)
    features = cluster_features(clusters, windows)
    assert features["a"]["cluster_size"] == 2.0 and features["c"]["cluster_size"] == 1.0
    assert features["a"]["cluster_calls"] == 40.0
    assert features["b"]["cluster_generation_request_fire_rate"] == pytest.approx(10 / 40)
    assert features["a"]["cluster_degree"] == 1.0
    assert set(CLUSTER_FEATURES) <= set(features["c"])
    assert list(features["a"]) == list(features["c"])


def test_cluster_record_is_plain_json() -> None:
    import json

    windows = {"a": window_of(random_times(1)), "b": window_of(random_times(2))}
    accounts = {aid: Account(account_id=aid, payment_fingerprint="pf-1") for aid in windows}
    record = link(windows, accounts)[0].to_record()
    assert json.loads(json.dumps(record))["size"] == 2


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("link_at: -1\n", "link_at must be a number"),
        ("rules: {ip: {weight: high}}\n", "rules.ip.weight must be a number"),
        ("rules: {phone: {weight: 1}}\n", "rules.phone is not an indicator kind"),
        ("sync: {min_lift: 8, speed: 1}\n", "sync.speed is not a known field"),
        ("content: {min_coverage: most}\n", "content.min_coverage must be a number"),
        ("ignore: [template]\n", "ignore must be a list"),
        ("colour: red\n", "colour is not a known field"),
    ],
)
def test_config_errors_name_file_and_field(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "linking.yaml"
    path.write_text(text)
    with pytest.raises(LinkConfigError, match=message) as error:
        load_link_config(path)
    assert str(path) in str(error.value)


def test_config_loads_overrides(tmp_path: Path) -> None:
    path = tmp_path / "linking.yaml"
    path.write_text(
        "sync: {min_lift: 8}\nrules: {ip: {weight: 0.3}}\nignore: [[template, tpl-x]]\npair_limit: 50\n"
        "content: {min_shingles: 12}\n"
    )
    config = load_link_config(path)
    assert config.sync.min_lift == 8.0 and config.rules["ip"].weight == 0.3 and config.pair_limit == 50
    assert config.content.min_shingles == 12 and isinstance(config.content.min_shingles, int)
    assert Indicator("template", "tpl-x") in config.ignore
    assert config.rules["payment"] == LinkConfig().rules["payment"]


def test_busy_population_starting_together_has_no_lucky_pairs_but_the_hydra_is_found() -> None:
    """300 accounts that all start in the same hour (a launch, a busy morning) overlap a lot by
    chance; only accounts synchronised beyond what the population's timing explains are linked."""
    rng = random.Random(21)
    windows = {}
    for i in range(300):
        t = T0 + timedelta(seconds=rng.uniform(0, 3600))
        times = []
        for _ in range(20):
            t += timedelta(seconds=rng.choice([30, 30, rng.uniform(1, 4000)]))
            times.append(t)
        windows[f"busy-{i}"] = window_of(times, template=rng.choice(["tpl-a", "tpl-b", None]))
    bursts = [T0 + timedelta(seconds=rng.uniform(0, WEEK_S)) for _ in range(25)]
    for i in range(4):
        windows[f"hydra-{i}"] = window_of([b + timedelta(seconds=rng.uniform(0, 60)) for b in bursts])
    assert clustered(link(windows)) == [["hydra-0", "hydra-1", "hydra-2", "hydra-3"]]


@pytest.mark.parametrize(
    ("benign", "hydras"),
    [
        (600, [(12, "tpl-hydra"), (40, None)]),
        pytest.param(
            5000,
            [(10, "tpl-h0"), (50, None), (100, "tpl-h2"), (300, None), (500, "tpl-h4")],
            marks=pytest.mark.slow,
        ),
    ],
)
def test_hydras_among_session_based_benign_traffic(benign: int, hydras: list[tuple[int, str | None]]) -> None:
    """Benign accounts work in sessions (runs of busy 5-minute buckets, daytime in a few time
    zones), eval customers share a public template (one benign account in ten sends it too),
    colleagues share a NAT; two hydras rotate
    residential IPs and take part in 60% of their actor's bursts, one of them with a template."""
    rng = random.Random(0)

    def daytime() -> datetime:
        hour = (rng.gauss(14, 3) + rng.choice([0, 5, 9, 14])) % 24
        return T0 + timedelta(days=rng.randrange(7), hours=hour, seconds=rng.uniform(0, 3600))

    windows = {}
    for i in range(benign):
        n = rng.choice([3, 10, 30, 100])
        times = []
        for _ in range(max(1, n // 10)):
            start = daytime()
            times += [start + timedelta(seconds=rng.uniform(0, 1800)) for _ in range(min(n, 10))]
        # the evaluation template is public: one benign account in ten sends it now and then
        public = {"template": "tpl-mtbench", "template_share": 0.3} if i % 10 == 0 else {}
        windows[f"benign-{i}"] = window_of(times, tls="t13d_sdk", asn=16509, **public)
    for i in range(5):
        windows[f"eval-{i}"] = window_of(
            [daytime() for _ in range(60)], template="tpl-mtbench", system="Act as a judge"
        )
    for g in range(5):
        for j in range(4):
            windows[f"corp{g}-{j}"] = window_of(
                [daytime() for _ in range(30)], ip=f"nat-{g}", tls=f"tls-{g}", asn=g
            )
    expected = []
    for h, (size, template) in enumerate(hydras):
        bursts = [T0 + timedelta(seconds=rng.uniform(0, WEEK_S)) for _ in range(40)]
        for j in range(size):
            mine = [b + timedelta(seconds=rng.uniform(0, 120)) for b in bursts if rng.random() < 0.6]
            windows[f"hydra{h}-{j:02d}"] = window_of(
                mine + [m + timedelta(seconds=20) for m in mine], template=template
            )
        expected.append(sorted(f"hydra{h}-{j:02d}" for j in range(size)))
    clusters = link(windows)
    assert sorted(clustered(clusters)) == sorted(expected)
    record = next(c for c in clusters if len(c.accounts) == hydras[1][0]).to_record(max_edges=5)
    assert record["n_edges"] >= hydras[1][0] - 1 and len(record["edges"]) == 5


def test_known_actor_round_trips_through_json_and_rejects_bad_records() -> None:
    import json

    actor = KnownActor(
        "actor-1", frozenset({Indicator("payment", "pf-1"), Indicator("template", "t")}), "ban 42"
    )
    assert KnownActor.from_record(json.loads(json.dumps(actor.to_record()))) == actor
    with pytest.raises(ValueError, match=r"bans.jsonl:3: field 'indicators\[0\]' has unknown kind 'phone'"):
        KnownActor.from_record({"actor_id": "a", "indicators": [["phone", "555"]]}, "bans.jsonl:3")
    with pytest.raises(ValueError, match="field 'actor_id'"):
        KnownActor.from_record({"indicators": []})


@pytest.mark.parametrize(
    "edges",
    [
        [("a", "b", 1.75), ("b", "c", 1.75), ("a", "c", 1.75), ("c", "d", 2.0)],
        [("c", "d", 2.0), ("a", "c", 1.75), ("b", "c", 1.75), ("a", "b", 1.75)],
        [("b", "c", 1.75), ("d", "c", 2.0), ("b", "a", 1.75), ("c", "a", 1.75)],
    ],
)
def test_weakest_link_does_not_depend_on_the_order_edges_were_found(
    edges: list[tuple[str, str, float]],
) -> None:
    # equal weights: the tie is broken by account ids, whatever order (set iteration) built the graph
    import networkx as nx

    from distillguard.linking.actor_cluster import _cluster_of

    graph = nx.Graph()
    for a, b, weight in edges:
        graph.add_edge(a, b, weight=weight, evidence=[])
    cluster = _cluster_of(graph, set(graph.nodes), {n: {} for n in graph.nodes}, {}, {})
    assert cluster.weakest_link == ("a", "b", 1.75)


_TIED_HUB = """
import json, networkx as nx
from distillguard.linking.actor_cluster import _cut_content_hubs
g = nx.Graph()
for side in ("p", "q"):  # two equally strong parts that only prompts join to the hub
    for i in range(3):
        g.add_edge("hub", f"{side}{i}", weight=1.0, content_only=True)
    g.add_edge(f"{side}0", f"{side}1", weight=2.0, content_only=False)
    g.add_edge(f"{side}1", f"{side}2", weight=2.0, content_only=False)
for i in range(20):  # the rest of the run: the hub's cluster is a small part of the graph
    g.add_edge(f"z{i}a", f"z{i}b", weight=2.0, content_only=False)
_cut_content_hubs(g)
print(json.dumps(sorted(map(sorted, g.edges()))))
"""


def test_a_hub_between_equal_parts_keeps_the_same_one_whatever_the_hash_seed() -> None:
    import os
    import subprocess
    import sys

    kept = {
        subprocess.run(
            [sys.executable, "-c", _TIED_HUB],
            env={**os.environ, "PYTHONHASHSEED": str(seed)},
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        ).stdout
        for seed in range(8)
    }
    assert len(kept) == 1
    edges = kept.pop()  # of two equal parts, the hub stays with the first by account id
    assert '["hub", "p0"]' in edges and '["hub", "q0"]' not in edges
