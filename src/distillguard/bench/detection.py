"""Detection-quality metrics of `bench detect`: what fraction of distillers a set of verdicts catches,
how many legitimate customers it hurts (per population, with denominators), how fast it flags, and
how well its clusters recover the actors behind the accounts. docs/bench.md defines each metric."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from distillguard.events.model import AccountVerdict, Label

ROUTER_TACTIC = "router_mixed"
RECIDIVIST_TACTIC = "recidivist"

# The two readings of a verdict: what enforcement acts on, and what at least reaches a reviewer.
POSITIVE_READINGS: dict[str, frozenset[str]] = {
    "distiller": frozenset({"distiller"}),
    "distiller_or_suspicious": frozenset({"distiller", "suspicious"}),
}


@dataclass(frozen=True)
class Rate:
    """A fraction with its numerator and denominator, so a reader sees what a percentage rests on.
    `value` is None when the denominator is zero (nothing to measure, not a perfect score)."""

    hits: int
    total: int

    @property
    def value(self) -> float | None:
        return self.hits / self.total if self.total else None

    def to_json(self) -> dict[str, Any]:
        return {"value": self.value, "hits": self.hits, "total": self.total}


def is_flagged(verdict: AccountVerdict | None, positive: frozenset[str]) -> bool:
    """An account with no verdict was not flagged: a scan that omits an account did not catch it."""
    return verdict is not None and verdict.verdict in positive


def account_rates(
    labels: Mapping[str, Label], verdicts: Mapping[str, AccountVerdict], positive: frozenset[str]
) -> dict[str, Rate]:
    """Overall account-level rates over the labelled accounts.

    recall: flagged distillers / distillers. precision: flagged distillers / flagged labelled
    accounts. false_positive_rate: flagged benign accounts / benign accounts.
    """
    distillers = [a for a, label in labels.items() if label.label == "distiller"]
    benign = [a for a, label in labels.items() if label.label == "benign"]
    true_pos = sum(is_flagged(verdicts.get(a), positive) for a in distillers)
    false_pos = sum(is_flagged(verdicts.get(a), positive) for a in benign)
    return {
        "recall": Rate(true_pos, len(distillers)),
        "precision": Rate(true_pos, true_pos + false_pos),
        "false_positive_rate": Rate(false_pos, len(benign)),
    }


def _rate_by(
    accounts: Iterable[tuple[str, str]], verdicts: Mapping[str, AccountVerdict], positive: frozenset[str]
) -> dict[str, Rate]:
    hits: dict[str, int] = defaultdict(int)
    totals: dict[str, int] = defaultdict(int)
    for account, group in accounts:
        totals[group] += 1
        hits[group] += is_flagged(verdicts.get(account), positive)
    return {group: Rate(hits[group], totals[group]) for group in sorted(totals)}


def recall_by_tactic(
    labels: Mapping[str, Label], verdicts: Mapping[str, AccountVerdict], positive: frozenset[str]
) -> dict[str, Rate]:
    """For each adversary tactic: flagged distiller accounts of that tactic / accounts of that tactic."""
    pairs = ((a, label.tactic) for a, label in labels.items() if label.label == "distiller")
    return _rate_by(pairs, verdicts, positive)


def fpr_by_population(
    labels: Mapping[str, Label], verdicts: Mapping[str, AccountVerdict], positive: frozenset[str]
) -> dict[str, Rate]:
    """For each benign population (the tactic field of benign labels): flagged accounts / accounts."""
    pairs = ((a, label.tactic) for a, label in labels.items() if label.label == "benign")
    return _rate_by(pairs, verdicts, positive)


def share_key(share: float | None) -> str:
    """How an attack share is written as a JSON key: '0.05', '0.5', or 'unknown' when absent."""
    return "unknown" if share is None else f"{share:g}"


def router_recall_by_share(
    labels: Mapping[str, Label], verdicts: Mapping[str, AccountVerdict], positive: frozenset[str]
) -> tuple[dict[str, Rate], float | None]:
    """Recall over router_mixed accounts grouped by attack_share, and the unweighted mean of the
    per-share recalls (each share counts once, however many accounts it has)."""
    pairs = (
        (a, share_key(label.attack_share))
        for a, label in labels.items()
        if label.label == "distiller" and label.tactic == ROUTER_TACTIC
    )
    by_share = _rate_by(pairs, verdicts, positive)
    by_share = dict(sorted(by_share.items(), key=lambda item: (item[0] == "unknown", _share_order(item[0]))))
    values = [rate.value for rate in by_share.values() if rate.value is not None]
    return by_share, (sum(values) / len(values) if values else None)


def _share_order(key: str) -> float:
    return float(key) if key != "unknown" else float("inf")


def calls_to_flag_stats(
    labels: Mapping[str, Label], verdicts: Mapping[str, AccountVerdict], positive: frozenset[str]
) -> dict[str, Any]:
    """Median and 90th percentile (numpy's linear interpolation) of calls_to_flag over campaign
    distiller accounts (every distiller tactic except router_mixed) that were flagged. Flagged
    accounts whose verdict gives no calls_to_flag are counted in `flagged_without_count`."""
    counts: list[int] = []
    without = 0
    for account, label in labels.items():
        if label.label != "distiller" or label.tactic == ROUTER_TACTIC:
            continue
        verdict = verdicts.get(account)
        if verdict is None or verdict.verdict not in positive:
            continue
        if verdict.calls_to_flag is None:
            without += 1
        else:
            counts.append(verdict.calls_to_flag)
    return {
        "median": float(np.median(counts)) if counts else None,
        "p90": float(np.percentile(counts, 90)) if counts else None,
        "accounts": len(counts),
        "flagged_without_count": without,
    }


def _cluster_of(account: str, verdicts: Mapping[str, AccountVerdict]) -> str | None:
    verdict = verdicts.get(account)
    return verdict.cluster_id if verdict is not None else None


# A router or reseller key carries many legitimate end users; an adversary passing through several
# routers does not make their keys one operator's accounts, so their actor is not a linking target.
NOT_LINKABLE = frozenset({"router_mixed"})


def cluster_recovery(
    labels: Mapping[str, Label], verdicts: Mapping[str, AccountVerdict], *, tactic: str | None = None
) -> dict[str, Any]:
    """For each actor with at least two labelled distiller accounts (router keys excepted, see
    NOT_LINKABLE; only actors whose accounts are mostly `tactic` when given): the largest fraction
    of its accounts that share one predicted cluster_id (an account with no cluster_id, or no
    verdict, is a cluster of its own). Reports the mean over actors, the fraction of actors at
    >= 95%, and the account-weighted recovery (accounts in their actor's largest cluster / all)."""
    by_actor: dict[str, list[str]] = defaultdict(list)
    for account, label in labels.items():
        if label.label == "distiller" and label.actor is not None:
            by_actor[label.actor].append(account)
    recoveries: dict[str, float] = {}
    recovered_accounts = 0
    total_accounts = 0
    for actor, accounts in sorted(by_actor.items()):
        if len(accounts) < 2:
            continue
        main_tactic = Counter(labels[a].tactic for a in accounts).most_common(1)[0][0]
        if main_tactic in NOT_LINKABLE or (tactic is not None and main_tactic != tactic):
            continue
        sizes: dict[str, int] = defaultdict(int)
        for account in accounts:
            cluster = _cluster_of(account, verdicts)
            if cluster is not None:
                sizes[cluster] += 1
        largest = max(max(sizes.values(), default=0), 1)
        recoveries[actor] = largest / len(accounts)
        recovered_accounts += largest
        total_accounts += len(accounts)
    values = list(recoveries.values())
    return {
        "mean": sum(values) / len(values) if values else None,
        "actors_at_95": Rate(sum(v >= 0.95 for v in values), len(values)).to_json(),
        "accounts": Rate(recovered_accounts, total_accounts).to_json(),
        "actors": len(values),
    }


def cluster_precision(labels: Mapping[str, Label], verdicts: Mapping[str, AccountVerdict]) -> dict[str, Any]:
    """For each predicted cluster with at least two labelled members that an action would reach
    (a member is labelled distiller or is flagged as one): the fraction of members operated by the
    cluster's majority actor, where benign accounts (and distillers with no actor) are always
    counted as wrong. Reported size-weighted over clusters: sum of majority members / sum of
    members. A cluster of benign accounts that nobody flags (colleagues of one company, say) harms
    no one and is counted separately. Members without a label are left out and counted."""
    members: dict[str, list[str]] = defaultdict(list)
    unlabelled = 0
    for account, verdict in verdicts.items():
        if verdict.cluster_id is None:
            continue
        if account in labels:
            members[verdict.cluster_id].append(account)
        else:
            unlabelled += 1
    majority_total = 0
    size_total = 0
    clusters = 0
    benign_only = 0
    for accounts in members.values():
        if len(accounts) < 2:
            continue
        actors: dict[str, int] = defaultdict(int)
        flagged = False
        for account in accounts:
            label = labels[account]
            flagged = flagged or verdicts[account].verdict == "distiller"
            if label.label == "distiller" and label.actor is not None:
                actors[label.actor] += 1
        if not actors and not flagged:
            benign_only += 1
            continue
        majority_total += max(actors.values(), default=0)
        size_total += len(accounts)
        clusters += 1
    return {
        "size_weighted": Rate(majority_total, size_total).to_json(),
        "clusters": clusters,
        "unflagged_benign_clusters": benign_only,
        "unlabelled_members": unlabelled,
    }


def recidivists_linked(labels: Mapping[str, Label], verdicts: Mapping[str, AccountVerdict]) -> Rate:
    """Fraction of recidivist accounts whose predicted cluster also holds an account of the same
    actor that is not itself a recidivist account (the actor's earlier, banned accounts)."""
    earlier: dict[str, set[str]] = defaultdict(set)  # cluster_id -> actors with a non-recidivist member
    for account, label in labels.items():
        cluster = _cluster_of(account, verdicts)
        if cluster is not None and label.actor is not None and label.tactic != RECIDIVIST_TACTIC:
            earlier[cluster].add(label.actor)
    recidivists = [
        (a, label)
        for a, label in labels.items()
        if label.label == "distiller" and label.tactic == RECIDIVIST_TACTIC
    ]
    linked = 0
    for account, label in recidivists:
        cluster = _cluster_of(account, verdicts)
        linked += (
            cluster is not None and label.actor is not None and label.actor in earlier.get(cluster, set())
        )
    return Rate(linked, len(recidivists))


def _rates_json(rates: Mapping[str, Rate]) -> dict[str, Any]:
    return {key: rate.to_json() for key, rate in rates.items()}


def evaluate(
    labels: Mapping[str, Label], verdicts: Mapping[str, AccountVerdict], *, examples: int = 10
) -> dict[str, Any]:
    """Every metric of `bench detect` for one set of verdicts, as a JSON-ready dict: coverage (labelled
    accounts missing from the verdicts, verdicts for accounts not in the labels), one block per
    reading of a positive (see POSITIVE_READINGS), and the cluster metrics, which do not depend on
    the verdict."""
    missing = sorted(a for a in labels if a not in verdicts)
    unknown = sorted(a for a in verdicts if a not in labels)
    readings: dict[str, Any] = {}
    for name, positive in POSITIVE_READINGS.items():
        by_share, share_mean = router_recall_by_share(labels, verdicts, positive)
        readings[name] = {
            **_rates_json(account_rates(labels, verdicts, positive)),
            "recall_campaigns": _campaign_recall(labels, verdicts, positive).to_json(),
            "recall_by_tactic": _rates_json(recall_by_tactic(labels, verdicts, positive)),
            "fpr_by_population": _rates_json(fpr_by_population(labels, verdicts, positive)),
            "router_recall_by_share": _rates_json(by_share),
            "router_recall_mean_over_shares": share_mean,
            "calls_to_flag": calls_to_flag_stats(labels, verdicts, positive),
        }
    return {
        "coverage": {
            "labelled_accounts": len(labels),
            "verdicts": len(verdicts),
            "missing_verdicts": len(missing),
            "missing_examples": missing[:examples],
            "unknown_accounts": len(unknown),
            "unknown_examples": unknown[:examples],
        },
        "readings": readings,
        "clusters": {
            "recovery": cluster_recovery(labels, verdicts),
            "hydra_recovery": cluster_recovery(labels, verdicts, tactic="hydra"),
            "precision": cluster_precision(labels, verdicts),
            "recidivists_linked": recidivists_linked(labels, verdicts).to_json(),
        },
    }


def _campaign_recall(
    labels: Mapping[str, Label], verdicts: Mapping[str, AccountVerdict], positive: frozenset[str]
) -> Rate:
    """Recall over campaign distiller accounts: every distiller tactic except router_mixed."""
    accounts = [
        a for a, label in labels.items() if label.label == "distiller" and label.tactic != ROUTER_TACTIC
    ]
    return Rate(sum(is_flagged(verdicts.get(a), positive) for a in accounts), len(accounts))
