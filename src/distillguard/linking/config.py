"""Linking thresholds and indicator weights as data, validated when loaded (errors name file and field).

Why these defaults: one shared payment instrument is enough to link; network indicators (sign-up
IP, call IP, TLS client within a network) are capped together below the threshold, so colleagues
behind one corporate NAT are never linked on network evidence alone. What accounts send links them
alone only when it is rare (IDF-style over the run's accounts, so a public evaluation template or a
popular app's system prompt weighs nothing) and is most of what both accounts send (one pipeline);
a system prompt alone never links. Otherwise it takes two independent families, a shared payment,
or strongly synchronised activity to link two accounts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml

from distillguard.linking.indicator import Indicator


class LinkConfigError(ValueError):
    """A linking configuration that cannot be used; the message names the file and the field."""


@dataclass(frozen=True)
class IndicatorRule:
    """How much one shared indicator of a kind weighs, and how rarity discounts it."""

    weight: float  # evidence from one rare shared value
    cap: float  # most evidence this kind can add to one pair
    rare_accounts: int = 2  # used by at most this many accounts: full weight
    common_accounts: int = 1_000_000  # used by at least this many: no weight (how the ecosystem looks)
    common_share: float = 1.0  # ... or by this share of all accounts in the run (when that is fewer)
    family: str = ""  # kinds of one family are capped together (family_caps)


@dataclass(frozen=True)
class SyncRule:
    """Synchronised activity: shared 5-minute activity buckets compared with chance."""

    min_shared_buckets: float = 5.0  # shared buckets, runs of consecutive buckets counted once
    min_jaccard: float = 0.3
    min_lift: float = 5.0
    # the overlap must also be unlikely under chance after a Bonferroni correction for every pair
    # of eligible accounts (a Poisson tail), or many accounts guarantee lucky pairs
    max_p_value: float = 0.01
    # strong enough to link alone: this many more orders of significance, shared buckets and lift
    strong_p_factor: float = 1e-6
    strong_shared_buckets: float = 8.0
    strong_lift: float = 10.0
    max_active_fraction: float = 0.5  # always-on accounts overlap everyone: no timing evidence
    lsh_threshold: float = 0.3
    num_perm: int = 64


@dataclass(frozen=True)
class ContentRule:
    """Templates and system prompts shared across accounts, near-duplicates grouped into families."""

    min_item_calls: int = 2  # a template seen once in an account is not sketched: it is not its habit
    min_calls: int = 3  # a family must cover this many of an account's calls ...
    min_share: float = 0.05  # ... and this share of them to be evidence about it
    min_jaccard: float = 0.4  # token-bigram Jaccard at which two frames are variants of one template
    # a frame this short ("Q: … A:", "make it async.") is one anybody writes: alone it says nothing
    # of its author however few accounts send it (it may still agree with other evidence)
    min_shingles: int = 8
    lsh_threshold: float = 0.3  # MinHash LSH recall point, below min_jaccard so few pairs are missed
    num_perm: int = 64
    # what two accounts share counts from this share of each one's calls, fully from the next:
    # one pipeline's accounts share most of what they send, customers of a public template less
    min_coverage: float = 0.5
    full_coverage: float = 0.8
    # a pair whose other evidence reaches this is named already: its content only has to agree,
    # and counts while fewer than `corroboration_share` of the run's accounts use it (content
    # alone: the kind's stricter `common_share`), at most `corroboration_cap` in all
    corroborate_from: float = 0.5
    corroboration_share: float = 0.1
    corroboration_cap: float = 0.7


@dataclass(frozen=True)
class CentroidRule:
    min_embedded: int = 16
    min_cosine: float = 0.9


# below this many accounts a share of the population says nothing about how common a value is
_MIN_COMMON = 10.0

DEFAULT_RULES: dict[str, IndicatorRule] = {
    "payment": IndicatorRule(weight=1.0, cap=1.0, rare_accounts=500, common_accounts=5000),
    "signup_ip": IndicatorRule(weight=0.6, cap=0.6, rare_accounts=5, common_accounts=50, family="network"),
    "ip": IndicatorRule(weight=0.4, cap=0.4, rare_accounts=5, common_accounts=50, family="network"),
    "tls_asn": IndicatorRule(weight=0.4, cap=0.4, rare_accounts=5, common_accounts=50, family="network"),
    # IDF over the run's accounts: full weight up to 50 accounts (or 1% of the run), none from 500
    # (or 2%): a public template or a popular app's system prompt is how the ecosystem looks
    "template": IndicatorRule(
        weight=1.0, cap=1.0, rare_accounts=50, common_accounts=500, common_share=0.02, family="prompt"
    ),
    "system_prompt": IndicatorRule(
        weight=0.5, cap=0.5, rare_accounts=50, common_accounts=500, common_share=0.02, family="prompt"
    ),
    "sync": IndicatorRule(weight=0.6, cap=1.0, family="behaviour"),
    "centroid": IndicatorRule(weight=0.25, cap=0.25, family="behaviour"),
}
DEFAULT_FAMILY_CAPS: dict[str, float] = {"network": 0.8, "prompt": 1.0, "behaviour": 1.0}


@dataclass(frozen=True)
class LinkConfig:
    link_at: float = 1.0  # a pair's capped evidence must reach this to become an edge
    known_actor_link_at: float = 0.7  # an account's match with a known actor's indicators
    # a known actor's template or system prompt counts at most this much towards the match: anyone
    # who runs the same pipeline later sends it too, so prompts corroborate infrastructure there
    known_actor_prompt_cap: float = 0.6
    min_indicator_calls: int = 3  # an indicator must cover this many of an account's calls ...
    min_indicator_share: float = 0.05  # ... and this share of them, or it is incidental
    pair_limit: int = 300  # indicators held by more accounts only corroborate other candidate pairs
    rules: dict[str, IndicatorRule] = field(default_factory=lambda: dict(DEFAULT_RULES))
    family_caps: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_FAMILY_CAPS))
    sync: SyncRule = field(default_factory=SyncRule)
    centroid: CentroidRule = field(default_factory=CentroidRule)
    content: ContentRule = field(default_factory=ContentRule)
    # (kind, value) pairs that are never evidence, e.g. a public evaluation template
    ignore: frozenset[Indicator] = frozenset()

    def rarity(self, kind: str, accounts: int, population: int, common_share: float | None = None) -> float:
        """IDF over the run's accounts, scaled: 1 for a value used by at most `rare_accounts`,
        0 from `common_accounts` (or `common_share` of the ``population`` of accounts in the run,
        when that is fewer; ``common_share`` overrides the rule's), and
        ``log(common / accounts) / log(common / rare)`` between.

        >>> c = LinkConfig()
        >>> c.rarity("ip", 3, 10_000), c.rarity("ip", 50, 10_000), round(c.rarity("ip", 16, 10_000), 2)
        (1.0, 0.0, 0.49)
        >>> c.rarity("template", 40, 100_000), c.rarity("template", 40, 2_000)
        (1.0, 0.0)
        >>> round(c.rarity("template", 150, 100_000), 2), round(c.rarity("template", 30, 2_000), 2)
        (0.52, 0.42)
        """
        rule = self.rules[kind]
        share = rule.common_share if common_share is None else common_share
        common = float(rule.common_accounts)
        if share < 1.0:
            common = min(common, max(share * population, _MIN_COMMON))
        rare = min(float(rule.rare_accounts), common / 2)
        if accounts <= rare:
            return 1.0
        if accounts >= common:
            return 0.0
        return math.log(common / accounts) / math.log(common / rare)


def _number(value: Any, where: str, lo: float = 0.0, hi: float = math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
        raise LinkConfigError(f"{where} must be a number in [{lo}, {hi}], got {value!r}")
    return float(value)


def _section(cls: type, record: Any, where: str, base: Any) -> Any:
    if not isinstance(record, dict):
        raise LinkConfigError(f"{where} must be a mapping")
    known = {f.name: f for f in fields(cls)}
    values: dict[str, Any] = {}
    for key, value in record.items():
        if key not in known:
            raise LinkConfigError(f"{where}.{key} is not a known field (known: {sorted(known)})")
        if key == "family":
            if not isinstance(value, str):
                raise LinkConfigError(f"{where}.{key} must be a string")
            values[key] = value
        else:
            number = _number(value, f"{where}.{key}")
            values[key] = int(number) if isinstance(getattr(base, key), int) else number
    return replace(base, **values)


def load_link_config(path: Path) -> LinkConfig:
    """A `LinkConfig` from YAML; fields left out keep their defaults. Example::

    link_at: 1.0
    rules: {ip: {weight: 0.3}}
    sync: {min_lift: 8}
    ignore: [[template, "tpl-mtbench-judge"]]
    """
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise LinkConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(document, dict):
        raise LinkConfigError(f"{path}: expected a mapping at the top level")
    config = LinkConfig()
    updates: dict[str, Any] = {}
    scalars = {
        "link_at",
        "known_actor_link_at",
        "known_actor_prompt_cap",
        "min_indicator_calls",
        "min_indicator_share",
        "pair_limit",
    }
    for key, value in document.items():
        where = f"{path}: {key}"
        if key in scalars:
            number = _number(value, where)
            updates[key] = int(number) if isinstance(getattr(config, key), int) else number
        elif key == "rules":
            if not isinstance(value, dict):
                raise LinkConfigError(f"{where} must be a mapping of indicator kind to rule")
            rules = dict(config.rules)
            for kind, record in value.items():
                if kind not in rules:
                    raise LinkConfigError(f"{where}.{kind} is not an indicator kind (known: {sorted(rules)})")
                rules[kind] = _section(IndicatorRule, record, f"{where}.{kind}", rules[kind])
            updates["rules"] = rules
        elif key == "family_caps":
            if not isinstance(value, dict):
                raise LinkConfigError(f"{where} must be a mapping of family to cap")
            updates["family_caps"] = {
                **config.family_caps,
                **{f: _number(v, f"{where}.{f}") for f, v in value.items()},
            }
        elif key == "sync":
            updates["sync"] = _section(SyncRule, value, where, config.sync)
        elif key == "centroid":
            updates["centroid"] = _section(CentroidRule, value, where, config.centroid)
        elif key == "content":
            updates["content"] = _section(ContentRule, value, where, config.content)
        elif key == "ignore":
            if not isinstance(value, list) or not all(
                isinstance(item, list) and len(item) == 2 and all(isinstance(x, str) for x in item)
                for item in value
            ):
                raise LinkConfigError(f"{where} must be a list of [kind, value] pairs of strings")
            updates["ignore"] = frozenset(Indicator(kind, val) for kind, val in value)
        else:
            raise LinkConfigError(f"{where} is not a known field")
    return replace(config, **updates)
