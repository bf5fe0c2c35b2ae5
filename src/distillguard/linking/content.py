"""Linking by content: accounts of one actor send the same templates and system prompts, even when
they share no infrastructure.

Each account's heavy-hitter templates (their fixed frames, see `AccountWindow.template_frames`) and
system prompts are cut into token-bigram shingles. MinHash LSH (`linking.minhash`, datasketch's)
finds near-duplicates across the whole run without comparing every pair, and near-duplicates whose
exact shingle Jaccard reaches `ContentRule.min_jaccard` are grouped into one family: a pipeline's
template and its paraphrased variants. `linking.actor_cluster` weighs what two accounts share by
each family's rarity (IDF-style over the accounts of the run that use it: a public evaluation
template used by many customers weighs nothing) and by how much of both accounts' calls it is.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Set
from dataclasses import dataclass

import networkx as nx
import numpy as np
from datasketch.hashfunc import sha1_hash32

from distillguard.features.account_window import AccountWindow
from distillguard.linking import minhash
from distillguard.linking.config import ContentRule

# CJK and kana/hangul are written without spaces: each character is a token there, words elsewhere;
# punctuation runs ("###", "[[", "->") are tokens too, since they are much of a template's shape.
_TOKEN = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]|\w+|[^\w\s]+")
SHINGLE = 2
PREVIEW = 80
UNKNOWN_LENGTH = 1_000_000


def shingles(text: str) -> frozenset[str]:
    """Token bigrams of a template frame: order-aware, and a paraphrase that changes a few words
    keeps most of them (bigrams join paraphrases that 3-grams split; measured on hand-made
    paraphrase families, Jaccard 0.46-0.74 against 0.18-0.67 with 3-grams).

    >>> sorted(shingles("Q: \\x01 A:"))
    ['\\x01 a', ': \\x01', 'a :', 'q :']
    """
    tokens = _TOKEN.findall(text.lower().replace("\x01", " \x01 "))
    if len(tokens) < SHINGLE:
        return frozenset([" ".join(tokens)]) if tokens else frozenset()
    return frozenset(" ".join(tokens[i : i + SHINGLE]) for i in range(len(tokens) - SHINGLE + 1))


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    union = len(a | b)
    return len(a & b) / union if union else 0.0


@dataclass(eq=False)  # identity: families are keys of per-account maps
class Family:
    """Near-duplicate templates (or system prompts) of the run: one pipeline's template and its
    variants. ``users`` are all accounts that sent it (for rarity); ``counts`` their calls in it."""

    kind: str  # "template" or "system_prompt"
    preview: str
    variants: int
    least_similar: float  # Jaccard of the least similar pair of variants joined directly
    length: int  # shingles of its longest variant: how much of it two authors could not write alike
    counts: dict[str, int]
    shares: dict[str, float]

    @property
    def users(self) -> int:
        return len(self.counts)


def _items(
    windows: Mapping[str, AccountWindow], kind: str, rule: ContentRule, ignore: Set[str]
) -> tuple[dict[str, dict[str, int]], dict[str, str], dict[str, int]]:
    """Per account: item key -> calls, the text of each key, and each account's denominator."""
    per_account: dict[str, dict[str, int]] = {}
    texts: dict[str, str] = {}
    totals: dict[str, int] = {}
    for aid, window in windows.items():
        if kind == "template":
            summary, known = window.templates, window.template_frames
        else:
            summary, known = window.system_prompts, window.system_previews
        found = {
            key: count
            for key, count in summary.counts.items()
            if count >= rule.min_item_calls and key not in ignore
        }
        if not found:
            continue
        per_account[aid] = found
        totals[aid] = window.templates.n if kind == "template" else window.n
        for key in found:
            if key not in texts:
                # without a frame (state built by `features.bulk`) the key itself matches exactly
                texts[key] = known.get(key, key)
    return per_account, texts, totals


def families(
    windows: Mapping[str, AccountWindow], kind: str, rule: ContentRule, ignore: Set[str] = frozenset()
) -> list[Family]:
    """The run's content families of one kind, each with its users' calls and shares. Keys in
    ``ignore`` (template fingerprints or system-prompt keys) are never content of anyone."""
    per_account, texts, totals = _items(windows, kind, rule, ignore)
    unframed = {text for key, text in texts.items() if text == key}
    by_text: dict[str, list[str]] = defaultdict(list)  # one sketch per distinct text, not per key
    for key, text in texts.items():
        by_text[text].append(key)
    sets = {text: shingles(text) for text in by_text}
    sets = {text: s for text, s in sets.items() if s}
    # one sketch per text, in sorted order; a shingle many texts share is hashed once
    ordered = sorted(sets)
    hash_of: dict[str, int] = {}
    items = []
    for text in ordered:
        for shingle in sets[text]:
            if (item := hash_of.get(shingle)) is None:
                item = hash_of[shingle] = sha1_hash32(shingle.encode("utf-8", "surrogatepass"))
            items.append(item)
    lengths = np.fromiter((len(sets[text]) for text in ordered), dtype=np.int64, count=len(ordered))
    sketches = minhash.signatures(
        np.array(items, dtype=np.uint32), lengths, minhash.permutations(rule.num_perm, seed=1)
    )
    # variants joined directly by an exact Jaccard at or above the threshold; connected
    # components are families (union-find from networkx; which member is a family's root is
    # moot: only the members are read)
    joined = nx.utils.UnionFind(by_text)
    least: dict[str, float] = {}
    firsts, seconds = minhash.candidate_pairs(sketches, rule.lsh_threshold)
    for i, j in zip(firsts.tolist(), seconds.tolist(), strict=True):
        text, other = ordered[i], ordered[j]
        similarity = jaccard(sets[text], sets[other])
        if similarity >= rule.min_jaccard:
            joined.union(text, other)
            least[text] = min(least.get(text, 1.0), similarity)
            least[other] = min(least.get(other, 1.0), similarity)
    members: dict[str, list[str]] = defaultdict(list)
    for text in by_text:
        members[joined[text]].append(text)
    family_of_key = {key: root for root, group in members.items() for text in group for key in by_text[text]}
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    by_variant: dict[str, Counter[str]] = defaultdict(Counter)
    for aid, found in per_account.items():
        for key, count in found.items():
            root = family_of_key[key]
            counts[root][aid] += count
            by_variant[root][texts[key]] += count
    out = []
    for root, users in counts.items():
        group = members[root]
        out.append(
            Family(
                kind=kind,
                preview=by_variant[root].most_common(1)[0][0][:PREVIEW],
                variants=len(group),
                least_similar=min((least.get(t, 1.0) for t in group), default=1.0) if len(group) > 1 else 1.0,
                # a bare fingerprint (no frame kept) cannot be judged by its length: it counts
                length=max(UNKNOWN_LENGTH if t in unframed else len(sets.get(t, ())) for t in group),
                counts=dict(users),
                shares={aid: count / totals[aid] for aid, count in users.items()},
            )
        )
    return sorted(out, key=lambda f: (-f.users, f.preview))


def family_holders(family: Family, rule: ContentRule) -> list[str]:
    """Accounts for which the family is part of what they send, not an incidental call."""
    return sorted(
        aid
        for aid, count in family.counts.items()
        if count >= rule.min_calls and family.shares[aid] >= rule.min_share
    )


@dataclass
class SharedContent:
    """The families of one kind two accounts both send, the commonest share first."""

    kind: str
    families: list[Family]
    a: str
    b: str

    def rare_share(self, rarity: Mapping[Family, float]) -> float:
        """The share of both accounts' calls that is rare content they have in common: an
        IDF-weighted histogram intersection (a public template adds nothing, however much of
        both accounts' traffic it is)."""
        return min(1.0, sum(min(f.shares[self.a], f.shares[self.b]) * rarity[f] for f in self.families))

    def describe(self, population: int) -> str:
        what = "template" if self.kind == "template" else "system prompt"
        shown = []
        for family in self.families[:3]:
            variants = (
                f", {family.variants} variants with skeleton Jaccard ≥ {family.least_similar:.2f}"
                if family.variants > 1
                else ""
            )
            shown.append(
                f"{family.preview!r} ({family.shares[self.a]:.0%} / {family.shares[self.b]:.0%} of calls, "
                f"used by {family.users} of {population} accounts{variants})"
            )
        more = f" and {len(self.families) - 3} more" if len(self.families) > 3 else ""
        plural = "s" if len(self.families) > 1 else ""
        return f"same {what}{plural} {'; '.join(shown)}{more}"


def shared_content(
    families: Iterable[Family],
    rule: ContentRule,
    pair_limit: int,
    others: Iterable[tuple[str, str]] = (),
    candidates_from: Callable[[Family], bool] = lambda family: True,
) -> dict[tuple[str, str], list[SharedContent]]:
    """For every pair of accounts that both hold a family ``candidates_from`` accepts, and every
    pair in ``others`` (pairs with evidence of another kind): the families they share, per kind. A
    family held by more than ``pair_limit`` accounts makes no candidate pairs; it only adds to others."""
    held: dict[str, dict[str, set[Family]]] = defaultdict(lambda: defaultdict(set))
    candidates: set[tuple[str, str]] = set(others)
    for family in families:
        holders = family_holders(family, rule)
        for aid in holders:
            held[aid][family.kind].add(family)
        if 2 <= len(holders) <= pair_limit and candidates_from(family):
            candidates.update((a, b) for i, a in enumerate(holders) for b in holders[i + 1 :])
    out: dict[tuple[str, str], list[SharedContent]] = {}
    for a, b in sorted(candidates):
        found = []
        for kind, mine in sorted(held[a].items()):
            both = mine & held[b].get(kind, set())
            if both:
                ordered = sorted(both, key=lambda f: (-min(f.shares[a], f.shares[b]), f.preview))
                found.append(SharedContent(kind, ordered, a, b))
        if found:
            out[(a, b)] = found
    return out


def all_families(
    windows: Mapping[str, AccountWindow], rule: ContentRule, ignore: Mapping[str, Set[str]]
) -> list[Family]:
    """Template and system-prompt families; ``ignore`` maps a kind to its keys that never count."""
    return families(windows, "template", rule, ignore.get("template", frozenset())) + families(
        windows, "system_prompt", rule, ignore.get("system_prompt", frozenset())
    )
