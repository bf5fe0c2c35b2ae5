"""Account linking: a graph of accounts joined by shared indicators; its clusters are actors.

Edges are typed and weighted, and every edge carries the sentences a reviewer reads. An indicator
counts only in proportion to its rarity (a template, TLS fingerprint or IP shared by many accounts
is how the ecosystem looks, not evidence of one operator), weak kinds need each other to reach
the link threshold, and synchronised activity is measured against chance. The graph is networkx:
already a project dependency, pure Python, with edge attributes that hold the evidence; the
graphs here are sparse (one edge per linked pair) and connected components take milliseconds.
"""

from __future__ import annotations

import hashlib
import itertools
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import combinations, pairwise
from typing import Any

import networkx as nx
import numpy as np
from scipy.special import pdtrc

from distillguard.events.model import Account
from distillguard.features.account_window import BUCKET_MS, HOUR_MS, AccountWindow
from distillguard.features.reducers import Distinct, unhash_int, unhash_ints
from distillguard.linking import content, minhash
from distillguard.linking.config import LinkConfig
from distillguard.linking.indicator import Indicator

# Indicator kinds that can be matched against a known actor (synchronised timing and centroids
# describe behaviour in this run, not a stable identifier).
STATIC_KINDS = ("payment", "signup_ip", "tls_asn", "template", "system_prompt", "ip")
# What an account sends; matched as families of near-duplicates (`linking.content`).
CONTENT_KINDS = ("template", "system_prompt")
CONTENT_FAMILY = "prompt"


@dataclass(frozen=True, slots=True)
class LinkEdge:
    """One piece of evidence joining two accounts (or an account and a known actor)."""

    a: str
    b: str
    kind: str
    weight: float
    evidence: str


@dataclass(frozen=True)
class KnownActor:
    """An actor from an earlier run or ban: the indicators its accounts were linked by."""

    actor_id: str
    indicators: frozenset[Indicator]
    source: str = ""

    def to_record(self) -> dict[str, Any]:
        """A JSON line for a ban list: ``{"actor_id", "source", "indicators": [[kind, value], ...]}``."""
        return {
            "actor_id": self.actor_id,
            "source": self.source,
            "indicators": [[ind.kind, ind.value] for ind in sorted(self.indicators)],
        }

    @classmethod
    def from_record(cls, record: Any, where: str = "known actor") -> KnownActor:
        """The inverse of `to_record`; errors say where and which field."""
        if not isinstance(record, dict):
            raise ValueError(f"{where}: expected an object")
        actor_id, source, raw = record.get("actor_id"), record.get("source", ""), record.get("indicators")
        if not isinstance(actor_id, str) or not actor_id:
            raise ValueError(f"{where}: field 'actor_id' must be a non-empty string")
        if not isinstance(source, str):
            raise ValueError(f"{where}: field 'source' must be a string")
        if not isinstance(raw, list):
            raise ValueError(f"{where}: field 'indicators' must be a list of [kind, value] pairs")
        found = set()
        for i, item in enumerate(raw):
            if not (isinstance(item, list) and len(item) == 2 and all(isinstance(x, str) for x in item)):
                raise ValueError(f"{where}: field 'indicators[{i}]' must be a [kind, value] pair of strings")
            if item[0] not in STATIC_KINDS:
                raise ValueError(
                    f"{where}: field 'indicators[{i}]' has unknown kind {item[0]!r} (known: {STATIC_KINDS})"
                )
            found.add(Indicator(item[0], item[1]))
        return cls(actor_id=actor_id, indicators=frozenset(found), source=source)


@dataclass
class ActorCluster:
    """Accounts believed to be run by one actor, with what links them."""

    cluster_id: str
    accounts: list[str]
    indicators: dict[str, list[str]]  # kind -> values shared by at least two members (or the actor)
    edges: list[LinkEdge]
    known_actors: list[str] = field(default_factory=list)
    # the pair whose evidence is the least that still holds the cluster together (the bottleneck of
    # a maximum spanning tree): a cluster is only as strong as this link
    weakest_link: tuple[str, str, float] | None = None

    def to_record(self, max_edges: int = 50) -> dict[str, Any]:
        """The `clusters.jsonl` line: plain JSON types only."""
        return {
            "cluster_id": self.cluster_id,
            "accounts": self.accounts,
            "size": len(self.accounts),
            "known_actors": self.known_actors,
            "indicators": self.indicators,
            "n_edges": len(self.edges),
            "weakest_link": None
            if self.weakest_link is None
            else {
                "a": self.weakest_link[0],
                "b": self.weakest_link[1],
                "weight": round(self.weakest_link[2], 4),
            },
            # the strongest edges; a hydra of hundreds of accounts has far more than anyone reads
            "edges": [
                {"a": e.a, "b": e.b, "kind": e.kind, "weight": round(e.weight, 4), "evidence": e.evidence}
                for e in self.edges[:max_edges]
            ],
        }


ACTOR_NODE = "actor:"


def account_indicators(
    window: AccountWindow, account: Account | None, config: LinkConfig
) -> dict[Indicator, float]:
    """The static indicators of one account, each with the share of its calls it covers
    (1.0 for account-record fields). Incidental ones (few calls, small share) are left out."""
    out: dict[Indicator, float] = {}
    if account is not None:
        if account.payment_fingerprint:
            out[Indicator("payment", account.payment_fingerprint)] = 1.0
        if account.signup_ip:
            out[Indicator("signup_ip", account.signup_ip)] = 1.0
    for kind, summary in (
        ("template", window.templates),
        ("system_prompt", window.system_prompts),
        ("tls_asn", window.tls),
        ("ip", window.ips),
    ):
        for value, count in summary.counts.items():
            share = count / summary.n
            if count >= config.min_indicator_calls and share >= config.min_indicator_share:
                out[Indicator(kind, value)] = share
    return out


def _cluster_id(accounts: Sequence[str]) -> str:
    digest = hashlib.blake2b("\n".join(sorted(accounts)).encode(), digest_size=6).hexdigest()
    return f"actor-{digest}"


class _PairEvidence:
    """Evidence collected for one pair, scored with per-kind and per-family caps."""

    __slots__ = ("items",)

    def __init__(self) -> None:
        self.items: list[tuple[str, float, str]] = []

    def add(self, kind: str, weight: float, evidence: str) -> None:
        self.items.append((kind, weight, evidence))

    def score(self, config: LinkConfig, without: str = "", cap_prompt: float = math.inf) -> float:
        """The capped total; ``without`` leaves out one family of kinds (what would remain), and
        ``cap_prompt`` caps what accounts send lower than `LinkConfig.family_caps` does."""
        per_kind: dict[str, float] = defaultdict(float)
        for kind, weight, _ in self.items:
            if not without or (config.rules[kind].family or kind) != without:
                per_kind[kind] += weight
        per_family: dict[str, float] = defaultdict(float)
        for kind, total in per_kind.items():
            rule = config.rules[kind]
            per_family[rule.family or kind] += min(total, rule.cap)
        caps = dict(config.family_caps)
        caps[CONTENT_FAMILY] = min(caps.get(CONTENT_FAMILY, math.inf), cap_prompt)
        return sum(min(total, caps.get(family, math.inf)) for family, total in per_family.items())


def _describe(ind: Indicator, df: int, share_a: float, share_b: float | None, preview: str | None) -> str:
    shown = f"{ind.value} ({preview!r})" if preview else ind.value
    usage = f"{share_a:.0%}" if share_b is None else f"{share_a:.0%} / {share_b:.0%}"
    calls = "" if ind.kind in ("payment", "signup_ip") else f" in {usage} of calls"
    return f"same {ind.kind.replace('_', ' ')} {shown}{calls}; used by {df} account(s)"


def link(
    windows: Mapping[str, AccountWindow],
    accounts: Mapping[str, Account] | None = None,
    *,
    known_actors: Iterable[KnownActor] = (),
    config: LinkConfig | None = None,
) -> list[ActorCluster]:
    """Link accounts into actor clusters. ``accounts`` (sign-up records) is optional.

    Returns the clusters of two or more accounts, plus any single account that matches a known
    actor, largest first. Accounts in no cluster are actors on their own.
    """
    config = config or LinkConfig()
    accounts = accounts or {}
    # the passes below read some of each account's states several times: unpickle each once
    windows = {aid: window.remembering() for aid, window in windows.items()}
    indicators = {aid: account_indicators(w, accounts.get(aid), config) for aid, w in windows.items()}
    previews: dict[str, str] = {}
    for window in windows.values():
        previews.update(window.system_previews)
    holders: dict[Indicator, list[str]] = defaultdict(list)
    for aid, found in sorted(indicators.items()):
        for ind in found:
            if ind not in config.ignore:
                holders[ind].append(aid)

    pairs: dict[tuple[str, str], _PairEvidence] = defaultdict(_PairEvidence)
    chained: list[tuple[Indicator, list[str], float]] = []
    large: dict[str, dict[Indicator, float]] = defaultdict(dict)  # evidence added only to candidate pairs
    for ind, members in holders.items():
        if ind.kind in CONTENT_KINDS:
            continue  # content is matched by families of near-duplicates below
        df = len(members)
        weight = config.rules[ind.kind].weight * config.rarity(ind.kind, df, len(windows))
        if df < 2 or weight <= 0.0:
            continue
        if df <= config.pair_limit:
            for a, b in combinations(members, 2):
                text = _describe(ind, df, indicators[a][ind], indicators[b][ind], previews.get(ind.value))
                pairs[(a, b)].add(ind.kind, weight, text)
        elif weight >= config.link_at:  # strong enough alone: a chain connects them all
            chained.append((ind, members, weight))
        else:
            for aid in members:
                large[aid][ind] = weight

    _sync_evidence(windows, config, pairs)
    for (a, b), evidence in pairs.items():
        for ind in large[a].keys() & large[b].keys():
            text = _describe(
                ind, len(holders[ind]), indicators[a][ind], indicators[b][ind], previews.get(ind.value)
            )
            evidence.add(ind.kind, large[a][ind], text)
    _content_evidence(windows, config, pairs)
    _centroid_evidence(windows, config, pairs)

    graph: nx.Graph = nx.Graph()
    for (a, b), evidence in pairs.items():
        total = evidence.score(config)
        if total >= config.link_at:
            edges = [LinkEdge(a, b, kind, weight, text) for kind, weight, text in evidence.items]
            content_only = evidence.score(config, without=CONTENT_FAMILY) < config.link_at
            graph.add_edge(a, b, weight=total, evidence=edges, content_only=content_only)
    for ind, members, weight in chained:
        for a, b in pairwise(members):
            text = _describe(
                ind, len(members), indicators[a][ind], indicators[b][ind], previews.get(ind.value)
            )
            edge = LinkEdge(a, b, ind.kind, weight, text)
            if graph.has_edge(a, b):
                graph[a][b]["evidence"].append(edge)
                graph[a][b]["content_only"] = False
            else:
                graph.add_edge(a, b, weight=weight, evidence=[edge], content_only=False)
    _cut_content_hubs(graph)

    actor_matches: dict[str, set[Indicator]] = defaultdict(set)
    for actor in known_actors:
        node = ACTOR_NODE + actor.actor_id
        for aid, found_ind in indicators.items():
            match = _PairEvidence()
            for ind in found_ind.keys() & actor.indicators:
                if ind in config.ignore:
                    continue
                weight = config.rules[ind.kind].weight * config.rarity(
                    ind.kind, len(holders[ind]), len(windows)
                )
                text = f"matches known actor {actor.actor_id}" + (
                    f" ({actor.source})" if actor.source else ""
                )
                match.add(ind.kind, weight, f"{text}: {ind.kind.replace('_', ' ')} {ind.value}")
            total = match.score(config, cap_prompt=config.known_actor_prompt_cap)
            if total >= config.known_actor_link_at:
                edges = [LinkEdge(aid, node, kind, weight, text) for kind, weight, text in match.items]
                graph.add_edge(aid, node, weight=total, evidence=edges, content_only=False)
                actor_matches[aid] |= {
                    ind for ind in found_ind.keys() & actor.indicators if ind not in config.ignore
                }

    clusters = [
        _cluster_of(graph, component, indicators, holders, actor_matches)
        for component in nx.connected_components(graph)
    ]
    return sorted(clusters, key=lambda c: (-len(c.accounts), c.cluster_id))


def _content_evidence(
    windows: Mapping[str, AccountWindow], config: LinkConfig, pairs: dict[tuple[str, str], _PairEvidence]
) -> None:
    """Shared template and system-prompt families (`linking.content`), read two ways.

    Alone, content picks its pairs out of every pair of the run, so it must be rare and most of
    what both accounts send: the evidence is the share of both accounts' calls that is content they
    have in common, each family weighted by its rarity (IDF-style over the run's accounts that use
    it, `IndicatorRule.common_share`), counted from `min_coverage`. One operator's accounts run one
    pipeline; customers of a public template share something everyone uses, or only part of what
    they send.

    For a pair that other evidence already names (`ContentRule.corroborate_from`: a shared egress
    address and sign-up IP, say), the question is only whether what they send agrees, and a family
    a few percent of the run use still says so (`corroboration_share`): it adds its kind's weight
    times that rarity, all content together at most `corroboration_cap`, however small a part of
    the accounts' calls it is."""
    rule = config.content
    population = len(windows)
    ignored: dict[str, set[str]] = defaultdict(set)
    for ind in config.ignore:
        ignored[ind.kind].add(ind.value)
    alone: dict[content.Family, float] = {}
    agreeing: dict[content.Family, float] = {}
    usable = []  # a family used by too many accounts is no evidence: not even a candidate
    for family in content.all_families(windows, rule, ignored):
        # a frame anybody writes ("Q: … A:") says nothing of its author on its own; it may agree
        short = family.length < rule.min_shingles
        alone[family] = 0.0 if short else config.rarity(family.kind, family.users, population)
        agreeing[family] = config.rarity(
            family.kind, family.users, population, common_share=rule.corroboration_share
        )
        if agreeing[family] > 0.0:
            usable.append(family)
    named = {pair for pair, evidence in pairs.items() if evidence.score(config) >= rule.corroborate_from}
    for pair, shared in content.shared_content(
        usable, rule, config.pair_limit, named, candidates_from=lambda f: alone[f] > 0.0
    ).items():
        strict: dict[str, float] = {}
        agree: dict[str, float] = {}
        for item in shared:
            ramp = (item.rare_share(alone) - rule.min_coverage) / (rule.full_coverage - rule.min_coverage)
            strict[item.kind] = config.rules[item.kind].weight * min(1.0, max(0.0, ramp))
            if pair in named:
                agree[item.kind] = config.rules[item.kind].weight * max(agreeing[f] for f in item.families)
        scale = min(1.0, rule.corroboration_cap / total) if (total := sum(agree.values())) > 0 else 0.0
        for item in shared:
            weight = max(strict[item.kind], agree.get(item.kind, 0.0) * scale)
            if weight > 0.0:
                pairs[pair].add(item.kind, weight, item.describe(population))


def _cut_content_hubs(graph: nx.Graph) -> None:
    """A cluster is only as strong as its weakest evidence. An account whose removal would split
    its cluster into parts it reaches only through edges that stand on shared prompts uses
    templates that several otherwise unrelated groups use (a public evaluation template, a popular
    system prompt): it does not chain them together. Between two such parts and nothing else, it
    stays with the one it shares the most with; linked to more, or also held by other evidence (a
    payment) to a part of its own, it is a hub and keeps none of its prompt-only links to them."""
    for node in list(nx.articulation_points(graph)):
        if not any(data["content_only"] for _, _, data in graph.edges(node, data=True)):
            continue
        rest = graph.subgraph(n for n in nx.node_connected_component(graph, node) if n != node)
        # sorted: the parts come out in set order, which changed with PYTHONHASHSEED and decided ties
        sides = sorted(
            sorted(n for n in side if graph.has_edge(node, n))
            for side in nx.connected_components(rest)
            if any(graph.has_edge(node, n) for n in side)
        )
        weak = [side for side in sides if all(graph[node][n]["content_only"] for n in side)]
        if len(weak) < 2:
            continue  # prompts join it to one part only: no chain through it
        if len(weak) == 2 == len(sides):
            strength = [sum(graph[node][n]["weight"] for n in side) for side in weak]
            weak = [weak[1] if strength[0] >= strength[1] else weak[0]]
        graph.remove_edges_from((node, n) for side in weak for n in side)
    graph.remove_nodes_from([n for n in list(graph.nodes) if graph.degree(n) == 0])


def _cluster_of(
    graph: nx.Graph,
    component: set[str],
    indicators: Mapping[str, Mapping[Indicator, float]],
    holders: Mapping[Indicator, list[str]],
    actor_matches: Mapping[str, set[Indicator]],
) -> ActorCluster:
    members = sorted(n for n in component if not n.startswith(ACTOR_NODE))
    actors = sorted(n[len(ACTOR_NODE) :] for n in component if n.startswith(ACTOR_NODE))
    edges = sorted(
        (edge for _, _, data in graph.subgraph(component).edges(data=True) for edge in data["evidence"]),
        key=lambda e: (-e.weight, e.a, e.b, e.kind),
    )
    shared: dict[str, set[str]] = defaultdict(set)
    # an indicator two members hold (an ignored one has no holders): counted over the members,
    # not over its holders, who for a common one are much of the run
    held = Counter(ind for aid in members for ind in indicators[aid] if ind in holders)
    for ind, count in held.items():
        if count >= 2:
            shared[ind.kind].add(ind.value)
    for aid in members:
        for ind in actor_matches.get(aid, ()):
            shared[ind.kind].add(ind.value)
    # Kruskal breaks ties between equal weights in the order it meets the edges; the graph's own
    # order follows set iteration (it changed with PYTHONHASHSEED), so give it the edges sorted
    ordered = nx.Graph()
    ordered.add_weighted_edges_from(
        sorted(
            (min(a, b), max(a, b), data["weight"])
            for a, b, data in graph.subgraph(component).edges(data=True)
        )
    )
    tree = nx.maximum_spanning_tree(ordered, weight="weight")
    weakest = min(
        ((a, b, data["weight"]) for a, b, data in tree.edges(data=True)),
        key=lambda e: (e[2], min(e[0], e[1]), max(e[0], e[1])),
        default=None,
    )
    return ActorCluster(
        cluster_id=actors[0] if actors else _cluster_id(members),
        accounts=members,
        indicators={kind: sorted(values) for kind, values in sorted(shared.items())},
        edges=edges,
        known_actors=actors,
        weakest_link=None
        if weakest is None
        else (min(weakest[0], weakest[1]), max(weakest[0], weakest[1]), weakest[2]),
    )


_BUCKETS_PER_HOUR = HOUR_MS // BUCKET_MS


class _Activity:
    """One account's active 5-minute buckets (a sample, scaled, once past the sketch size)."""

    __slots__ = ("active", "exact", "hour_counts", "kept", "run_length", "scale")

    def __init__(self, buckets: Distinct, scale: float, hour_counts: dict[int, float], adjacent: int) -> None:
        kept = buckets.smallest()
        self.kept = frozenset(kept)
        self.exact = buckets.exact
        self.active = buckets.estimate()
        self.scale = scale
        self.hour_counts = hour_counts
        # Sessions fill runs of consecutive buckets; two sessions that overlap share a run of
        # buckets, which is one coincidence, not several. The mean run length turns buckets into
        # independent events (from a sample, an adjacent pair is seen with the sampling rate).
        rate = len(kept) / self.active if self.active else 1.0
        follow = min(adjacent / len(kept) / rate, 0.95) if kept else 0.0
        self.run_length = 1.0 / (1.0 - follow)


def _activities(windows: Mapping[str, AccountWindow]) -> dict[str, _Activity]:
    """Every active account's `_Activity`, its buckets unhashed and counted per hour in one pass
    over all accounts (a few NumPy calls, not a few per account). Each hour's count is the account's
    scale added once per bucket in bucket order (np.add.at adds in index order, as a loop would)."""
    accounts = [(aid, w.buckets) for aid, w in windows.items() if w.n]
    kept = [buckets.smallest() for _, buckets in accounts]
    lengths = np.fromiter(map(len, kept), dtype=np.int64, count=len(kept))
    actives = np.fromiter((b.estimate() for _, b in accounts), dtype=np.float64, count=len(kept))
    scales = np.divide(actives, lengths, out=np.zeros(len(kept)), where=lengths > 0)
    owner = np.repeat(np.arange(len(kept)), lengths)
    hashes = unhash_ints(list(itertools.chain.from_iterable(kept)))
    ids = hashes[np.lexsort((hashes, owner))]  # ascending within each account (owners stay in order)
    hour = ids // _BUCKETS_PER_HOUR
    same = owner[1:] == owner[:-1]
    adjacent = np.bincount(owner[1:][same & (np.diff(ids) == 1)], minlength=len(kept))
    starts = np.ones(len(ids), dtype=bool)  # the first bucket of each (account, hour)
    starts[1:] = (hour[1:] != hour[:-1]) | ~same
    group = np.cumsum(starts) - 1
    counts = np.zeros(int(starts.sum()))
    np.add.at(counts, group, scales[owner])
    hours_of = hour[starts].tolist()
    counts_of = counts.tolist()
    bounds = np.searchsorted(owner[starts], np.arange(len(kept) + 1)).tolist()
    scale_of, adjacent_of = scales.tolist(), adjacent.tolist()
    return {
        aid: _Activity(
            buckets,
            scale_of[i],
            dict(zip(hours_of[bounds[i] : bounds[i + 1]], counts_of[bounds[i] : bounds[i + 1]], strict=True)),
            adjacent_of[i],
        )
        for i, (aid, buckets) in enumerate(accounts)
    }


def _sync_evidence(
    windows: Mapping[str, AccountWindow], config: LinkConfig, pairs: dict[tuple[str, str], _PairEvidence]
) -> None:
    """Synchronised activity (SynchroTrap-style): accounts active in the same 5-minute buckets far
    more often than chance. Chance follows the population's activity hour by hour (traffic has busy
    hours, and campaigns start together), so accounts that are merely busy when everyone is busy
    are not synchronised; within an hour, any 5-minute bucket is as likely as another. The pair's
    own activity is left out of the population, so a hydra does not explain itself away.
    Candidate pairs come from MinHash LSH over the bucket sets: cost grows with accounts, not pairs."""
    sync = config.sync
    activity = _activities(windows)
    hour_load: dict[int, float] = defaultdict(float)
    for act in activity.values():
        for hour, count in act.hour_counts.items():
            hour_load[hour] += count
    total = sum(hour_load.values())
    busy_buckets = len(hour_load) * _BUCKETS_PER_HOUR
    eligible = [
        aid
        for aid, act in sorted(activity.items())
        if act.active >= sync.min_shared_buckets and act.active / busy_buckets <= sync.max_active_fraction
    ]
    if len(eligible) < 2:
        return
    kept = [activity[aid].kept for aid in eligible]
    lengths = np.fromiter(map(len, kept), dtype=np.int64, count=len(kept))
    # the low 32 bits of each bucket's hash are its item hash (a minimum over a set: order is moot)
    items = np.fromiter(itertools.chain.from_iterable(kept), dtype=np.uint64, count=int(lengths.sum()))
    sketches = minhash.signatures(
        items & np.uint64(0xFFFFFFFF), lengths, minhash.permutations(sync.num_perm, seed=7)
    )
    # Bonferroni over every pair that could have been compared
    log_p_max = math.log(sync.max_p_value) - math.log(len(eligible) * (len(eligible) - 1) / 2)
    null = _Null(hour_load, total)
    # Pairs already joined through linked pairs need no more evidence to be one cluster: in a
    # hydra of n accounts that saves most of the n²/2 comparisons. Which pairs the union-find lets
    # through depends on their order: by the first account, then the second (eligible is sorted),
    # as when each account's LSH candidates were checked in turn, a pair seen from its first side.
    joined = nx.utils.UnionFind()
    firsts, seconds = minhash.candidate_pairs(sketches, sync.lsh_threshold)
    for i, j in zip(firsts.tolist(), seconds.tolist(), strict=True):
        a, b = eligible[i], eligible[j]
        if joined[a] != joined[b] and _sync_pair((a, b), windows, activity, null, log_p_max, config, pairs):
            joined.union(a, b)


class _Null:
    """Expected shared buckets of two accounts under chance, from the population's hourly load."""

    def __init__(self, hour_load: Mapping[int, float], total: float) -> None:
        self.hour_load = hour_load
        self.total = total

    def expected(self, one: _Activity, other: _Activity) -> float:
        """``one`` keeps its own buckets; ``other`` places its activity like everyone else does
        (the pair's own activity left out of the population)."""
        rest = max(self.total - one.active - other.active, 1.0) * _BUCKETS_PER_HOUR
        others = other.hour_counts
        load = self.hour_load
        expected = 0.0
        for hour, count in one.hour_counts.items():
            chance = (load[hour] - count - others.get(hour, 0.0)) / rest
            expected += count * min(1.0, other.active * max(chance, 0.0))
        return expected


def _sync_pair(
    pair: tuple[str, str],
    windows: Mapping[str, AccountWindow],
    activity: Mapping[str, _Activity],
    null: _Null,
    log_p_max: float,
    config: LinkConfig,
    pairs: dict[tuple[str, str], _PairEvidence],
) -> bool:
    """Add synchronised-activity evidence to the pair; True when the pair is now linked."""
    a, b = pair
    sync = config.sync
    act_a, act_b = activity[a], activity[b]
    if act_a.exact and act_b.exact:
        both = len(act_a.kept & act_b.kept)
        jaccard = both / (len(act_a.kept) + len(act_b.kept) - both)
    else:
        jaccard = Distinct.jaccard(windows[a].buckets, windows[b].buckets)
    na, nb = act_a.active, act_b.active
    shared = jaccard * (na + nb) / (1.0 + jaccard)
    run = max(act_a.run_length, act_b.run_length)
    events = shared / run  # independent coincidences, runs of buckets counted once
    if jaccard < sync.min_jaccard or events < sync.min_shared_buckets:
        return False
    # the larger of the two ways round: conservative
    expected = max(null.expected(act_a, act_b), null.expected(act_b, act_a), 1e-9)
    lift = shared / expected
    if lift < sync.min_lift:
        return False
    # P(X >= events) for X ~ Poisson(expected events); underflow means "beyond any threshold"
    log_p = math.log(max(float(pdtrc(math.ceil(events) - 1, expected / run)), 1e-300))
    if log_p > log_p_max:
        return False
    strong = (
        log_p <= log_p_max + math.log(sync.strong_p_factor)
        and events >= sync.strong_shared_buckets
        and lift >= sync.strong_lift
    )
    weight = config.rules["sync"].cap if strong else config.rules["sync"].weight
    text = (
        f"active in the same {BUCKET_MS // 60000}-minute windows: ~{shared:.0f} shared of {na:.0f} / {nb:.0f} "
        f"(Jaccard {jaccard:.2f}, {lift:.0f}x what the population's hourly activity gives by chance, "
        f"p < 1e{math.floor(log_p / math.log(10)) + 1})"
    )
    if run > 1.05:
        text += f"; sessions of ~{run:.1f} buckets counted once"
    together = sorted(unhash_int(h) for h in act_a.kept & act_b.kept)[:3]
    if together:
        when = ", ".join(
            datetime.fromtimestamp(bucket * BUCKET_MS / 1000, UTC).strftime("%Y-%m-%d %H:%M")
            for bucket in together
        )
        text += f"; e.g. {when} UTC"
    evidence = pairs[pair]
    evidence.add("sync", weight, text)
    return evidence.score(config) >= config.link_at


def _centroid_evidence(
    windows: Mapping[str, AccountWindow], config: LinkConfig, pairs: dict[tuple[str, str], _PairEvidence]
) -> None:
    """Near-identical prompt-embedding centroids, measured after removing the population's mean
    (every large account's centroid drifts towards it). Only corroborates pairs that already have
    other evidence: centroids alone cannot tell one operator from two customers with one use case."""
    rule = config.centroid
    ready = {
        aid: c
        for aid, w in windows.items()
        if w.embeddings.n >= rule.min_embedded and (c := w.embeddings.centroid()) is not None
    }
    if len(ready) < 2 or not pairs:
        return
    population = np.mean(np.stack(list(ready.values())), axis=0)
    # each account's centred centroid and its length, once, not once per pair it is in
    centred = {aid: (u := c - population, np.linalg.norm(u)) for aid, c in ready.items()}
    for (a, b), found in pairs.items():
        if a not in centred or b not in centred:
            continue
        (u, u_norm), (v, v_norm) = centred[a], centred[b]
        norm = float(u_norm * v_norm)
        if norm == 0.0:
            continue
        cosine = float(u @ v) / norm
        if cosine >= rule.min_cosine:
            found.add(
                "centroid",
                config.rules["centroid"].weight,
                f"prompt-embedding centroids nearly identical (cosine {cosine:.3f} after removing the population mean)",
            )


def actor_of(cluster: ActorCluster, *, source: str = "") -> KnownActor:
    """A known actor to remember (after a ban): the static indicators its accounts shared."""
    found = frozenset(
        Indicator(kind, value)
        for kind, values in cluster.indicators.items()
        if kind in STATIC_KINDS
        for value in values
    )
    return KnownActor(actor_id=cluster.cluster_id, indicators=found, source=source)


CLUSTER_FEATURES = (
    "cluster_size",
    "cluster_degree",
    "cluster_link_weight",
    "cluster_known_actor",
    "cluster_calls",
    "cluster_any_signal_fire_rate",
)


def cluster_features(
    clusters: Sequence[ActorCluster], windows: Mapping[str, AccountWindow]
) -> dict[str, dict[str, float]]:
    """Cluster evidence propagated to every account (singletons included, so the vector is stable):
    size, the account's links, whether a known actor is in its cluster, and the cluster's pooled
    call volume and signal fire rates (a hydra spreads its calls thin; pooled, they add up)."""
    signal_names = next(iter(windows.values())).signal_names if windows else ()
    out: dict[str, dict[str, float]] = {}
    for aid, window in windows.items():
        out[aid] = _pooled([window], signal_names) | {
            "cluster_size": 1.0,
            "cluster_degree": 0.0,
            "cluster_link_weight": 0.0,
            "cluster_known_actor": 0.0,
        }
    for cluster in clusters:
        members = [aid for aid in cluster.accounts if aid in windows]
        pooled = _pooled([windows[aid] for aid in members], signal_names)
        degree: dict[str, int] = defaultdict(int)
        strongest: dict[str, float] = defaultdict(float)
        for edge in cluster.edges:
            for end in (edge.a, edge.b):
                degree[end] += 1
                strongest[end] = max(strongest[end], edge.weight)
        for aid in members:
            out[aid] = pooled | {
                "cluster_size": float(len(cluster.accounts)),
                "cluster_degree": float(degree[aid]),
                "cluster_link_weight": strongest[aid],
                "cluster_known_actor": 1.0 if cluster.known_actors else 0.0,
            }
    return out


def _pooled(members: Sequence[AccountWindow], signal_names: Sequence[str]) -> dict[str, float]:
    calls = sum(w.n for w in members)
    out = {
        "cluster_calls": float(calls),
        "cluster_any_signal_fire_rate": sum(w.any_fired for w in members) / calls if calls else 0.0,
    }
    for name in signal_names:
        out[f"cluster_{name}_fire_rate"] = (
            sum(w.signals[name].fired for w in members) / calls if calls else 0.0
        )
    return out
