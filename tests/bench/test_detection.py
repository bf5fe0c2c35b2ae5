"""Metrics of `bench detect` on a hand-made case whose answers are worked out in the comments."""

from __future__ import annotations

import pytest

from distillguard.bench.detection import POSITIVE_READINGS, Rate, evaluate, recidivists_linked
from distillguard.events.model import AccountVerdict, Label


def label(
    account: str, kind: str, tactic: str, actor: str | None = None, share: float | None = None
) -> Label:
    return Label(account_id=account, label=kind, actor=actor, tactic=tactic, attack_share=share)


def verdict(account: str, kind: str, cluster: str | None = None, calls: int | None = None) -> AccountVerdict:
    return AccountVerdict(
        account_id=account,
        risk=0.5,
        verdict=kind,
        cluster_id=cluster,
        first_flagged_at=None,
        calls_to_flag=calls,
        reasons=[],
    )


LABELS = {
    x.account_id: x
    for x in [
        label("d1", "distiller", "synthetic_generation", "A"),
        label("d2", "distiller", "synthetic_generation", "A"),
        label("d3", "distiller", "recidivist", "A"),
        label("d4", "distiller", "cot_extraction", "B"),
        label("d5", "distiller", "cot_extraction", "B"),
        label("r1", "distiller", "router_mixed", "R", 0.05),
        label("r2", "distiller", "router_mixed", "R", 0.05),
        label("r3", "distiller", "router_mixed", "R", 0.5),
        label("b1", "benign", "casual"),
        label("b2", "benign", "casual"),
        label("b3", "benign", "tutoring"),
        label("b4", "benign", "eval_harness"),
    ]
}
VERDICTS = {
    x.account_id: x
    for x in [
        verdict("d1", "distiller", "c1", 10),
        verdict("d2", "distiller", "c1", 30),
        verdict("d3", "suspicious", "c1"),
        verdict("d4", "distiller", "c2", 50),
        # d5 has no verdict: counted as not flagged
        verdict("r1", "distiller"),
        verdict("r2", "benign"),
        verdict("r3", "distiller"),
        verdict("b1", "benign"),
        verdict("b2", "distiller", "c2"),  # a false positive, linked to actor B's cluster
        verdict("b3", "suspicious"),
        verdict("b4", "benign"),
        verdict("x9", "benign", "c1"),  # not in the labels
    ]
}
REPORT = evaluate(LABELS, VERDICTS)


def rate(hits: int, total: int) -> dict[str, object]:
    return Rate(hits, total).to_json()


@pytest.mark.parametrize(
    ("reading", "key", "expected"),
    [
        ("distiller", "recall", rate(5, 8)),  # d1 d2 d4 r1 r3
        ("distiller", "precision", rate(5, 6)),  # + b2
        ("distiller", "false_positive_rate", rate(1, 4)),
        ("distiller", "recall_campaigns", rate(3, 5)),
        ("distiller_or_suspicious", "recall", rate(6, 8)),  # + d3
        ("distiller_or_suspicious", "precision", rate(6, 8)),  # + b3
        ("distiller_or_suspicious", "false_positive_rate", rate(2, 4)),
    ],
)
def test_account_rates(reading: str, key: str, expected: dict[str, object]) -> None:
    assert REPORT["readings"][reading][key] == expected


def test_recall_by_tactic_and_fpr_by_population_carry_denominators() -> None:
    block = REPORT["readings"]["distiller"]
    assert block["recall_by_tactic"] == {
        "cot_extraction": rate(1, 2),
        "recidivist": rate(0, 1),
        "router_mixed": rate(2, 3),
        "synthetic_generation": rate(2, 2),
    }
    assert block["fpr_by_population"] == {
        "casual": rate(1, 2),
        "eval_harness": rate(0, 1),
        "tutoring": rate(0, 1),
    }
    assert REPORT["readings"]["distiller_or_suspicious"]["fpr_by_population"]["tutoring"] == rate(1, 1)


def test_router_recall_per_share_and_unweighted_mean() -> None:
    block = REPORT["readings"]["distiller"]
    assert block["router_recall_by_share"] == {"0.05": rate(1, 2), "0.5": rate(1, 1)}
    assert block["router_recall_mean_over_shares"] == pytest.approx(0.75)


def test_calls_to_flag_over_flagged_campaign_accounts() -> None:
    # d1, d2, d4 flagged with 10, 30, 50 calls; p90 interpolates: 30 + 0.8 * 20 = 46
    assert REPORT["readings"]["distiller"]["calls_to_flag"] == {
        "median": 30.0,
        "p90": pytest.approx(46.0),
        "accounts": 3,
        "flagged_without_count": 0,
    }
    # read with suspicious, d3 is flagged too but gives no count; router accounts never count
    assert REPORT["readings"]["distiller_or_suspicious"]["calls_to_flag"]["flagged_without_count"] == 1


def test_cluster_recovery_per_actor() -> None:
    # A: d1 d2 d3 all in c1 -> 1; B: d4 in c2, d5 missing -> 1/2; R's router keys are no linking
    # target (their end users are legitimate), so R is left out
    recovery = REPORT["clusters"]["recovery"]
    assert recovery["mean"] == pytest.approx((1 + 0.5) / 2)
    assert recovery["actors_at_95"] == rate(1, 2)
    assert recovery["accounts"] == rate(3 + 1, 5)
    assert recovery["actors"] == 2


def test_cluster_precision_counts_benign_members_as_wrong() -> None:
    # c1 = {d1, d2, d3} (x9 is unlabelled and left out): 3/3; c2 = {d4, b2}: 1/2 -> 4/5
    precision = REPORT["clusters"]["precision"]
    assert precision == {
        "size_weighted": rate(4, 5),
        "clusters": 2,
        "unflagged_benign_clusters": 0,
        "unlabelled_members": 1,
    }


def test_an_unflagged_cluster_of_benign_accounts_is_not_a_precision_error() -> None:
    from distillguard.bench.detection import cluster_precision

    labels = {a: label(a, "benign", "developer") for a in ("b1", "b2")} | {
        "d1": label("d1", "distiller", "hydra", "A")
    }
    labels["d2"] = label("d2", "distiller", "hydra", "A")
    verdicts = {
        "b1": verdict("b1", "benign", "colleagues"),
        "b2": verdict("b2", "benign", "colleagues"),
        "d1": verdict("d1", "distiller", "hydra-A"),
        "d2": verdict("d2", "distiller", "hydra-A"),
    }
    result = cluster_precision(labels, verdicts)
    assert result["size_weighted"] == rate(2, 2) and result["unflagged_benign_clusters"] == 1
    # the same colleagues flagged as distillers would be an error
    verdicts["b1"] = verdict("b1", "distiller", "colleagues")
    assert cluster_precision(labels, verdicts)["size_weighted"] == rate(2, 4)


@pytest.mark.parametrize(
    ("clusters", "expected"),
    [
        ({"old": "c1", "new": "c1"}, rate(1, 1)),  # linked to the actor's earlier account
        ({"old": "c1", "new": "c2"}, rate(0, 1)),  # a cluster of its own
        ({"old": "c1", "new": None}, rate(0, 1)),
        ({"old": None, "new": None}, rate(0, 1)),
    ],
)
def test_recidivist_linking(clusters: dict[str, str | None], expected: dict[str, object]) -> None:
    labels = {
        "old": label("old", "distiller", "synthetic_generation", "A"),
        "new": label("new", "distiller", "recidivist", "A"),
    }
    verdicts = {a: verdict(a, "distiller", c) for a, c in clusters.items()}
    assert recidivists_linked(labels, verdicts).to_json() == expected


def test_recidivist_with_only_other_recidivists_is_not_linked() -> None:
    labels = {a: label(a, "distiller", "recidivist", "A") for a in ("n1", "n2")}
    verdicts = {a: verdict(a, "distiller", "c1") for a in labels}
    assert recidivists_linked(labels, verdicts).to_json() == rate(0, 2)


def test_missing_and_unknown_accounts_are_reported() -> None:
    coverage = REPORT["coverage"]
    assert coverage["missing_verdicts"] == 1 and coverage["missing_examples"] == ["d5"]
    assert coverage["unknown_accounts"] == 1 and coverage["unknown_examples"] == ["x9"]


def test_empty_denominators_give_none_not_a_perfect_score() -> None:
    report = evaluate({"b": label("b", "benign", "casual")}, {})
    block = report["readings"]["distiller"]
    assert block["recall"]["value"] is None
    assert block["precision"]["value"] is None
    assert block["false_positive_rate"] == rate(0, 1)
    assert block["router_recall_mean_over_shares"] is None
    assert report["clusters"]["recovery"]["mean"] is None
    assert set(report["readings"]) == set(POSITIVE_READINGS)
