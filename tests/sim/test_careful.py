"""Careful mode cannot leak through metadata: a classifier on client metadata, pacing, volume, account
facts and request parameters alone cannot tell careful distillers from benign developers, app
backends and casual users; on the standard preset it can (printed for contrast)."""

from __future__ import annotations

import hashlib
import itertools
import math
import statistics
from collections import Counter, defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedGroupKFold, cross_val_predict

from distillguard.corpus import load_corpus
from distillguard.events.call_view import CallView, view_of
from distillguard.events.model import account_decoder, event_decoder, label_decoder
from distillguard.sim.generate import generate
from distillguard.sim.kinds import prompt_kind
from distillguard.sim.metadata import CLIENTS, EDU_MAIL, FREE_MAIL, NETWORKS, THROWAWAY_MAIL
from distillguard.sim.scenario import load_preset
from distillguard.sim.wording import JUDGE_FORMATS

COVER = ("developer", "app_backend", "casual")
ASN_KIND = {asn: kind for kind, networks in NETWORKS.items() for asn, _ in networks}
UA_FAMILIES = (
    "Mozilla",
    "OpenAI/Python",
    "OpenAI/JS",
    "langchain",
    "curl",
    "litellm",
    "python-requests",
    "aiohttp",
)
NETWORK_KINDS = tuple(NETWORKS)
TLS = tuple(sorted({c.tls for c in CLIENTS.values()}))
MAIL_KINDS = ("free", "throwaway", "edu", "company")
TIERS = ("free", "tier-1", "tier-2", "tier-3", "tier-4", "startup", "edu", "enterprise")


def _ua_family(ua: str | None) -> str:
    return next((f for f in UA_FAMILIES if ua and f in ua), "other")


def _mail_kind(domain: str) -> str:
    if domain in FREE_MAIL:
        return "free"
    if domain in THROWAWAY_MAIL:
        return "throwaway"
    return "edu" if domain in EDU_MAIL else "company"


# the simulator's own judge formats, known by how their prompts begin
JUDGE_OPENINGS = tuple(judge.prompt.split("{")[0] for formats in JUDGE_FORMATS.values() for judge in formats)


def _call_kind(view: CallView, judge_texts: set[str], reveal_texts: tuple[str, ...]) -> str:
    if view.endpoint == "/v1/completions":
        return "completion"  # the model continues a prefix up to a stop sequence
    if (
        view.prompt in judge_texts
        or view.system_prompt in judge_texts
        or view.prompt.startswith(JUDGE_OPENINGS)
    ):
        return "judge"
    if any(text in view.prompt for text in reveal_texts):
        return "cot_reveal"  # asked to show its reasoning, an answer sometimes carries it
    if "customer support ticket" in view.prompt:
        return "classification"
    return prompt_kind(view.prompt)


def _shares(values: list[Any], vocabulary: tuple[str, ...]) -> list[float]:
    counts = Counter(values)
    return [counts[v] / len(values) for v in vocabulary]


def metadata_features(folder: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Per-account metadata, pacing and request-parameter statistics straight from the files, for
    distillers and the benign populations a careful distiller takes as cover."""
    labels = {
        lab.account_id: lab
        for lab in (label_decoder.decode(x) for x in (folder / "labels.jsonl").read_bytes().splitlines())
    }
    records = {
        a.account_id: a
        for a in (account_decoder.decode(x) for x in (folder / "accounts.jsonl").read_bytes().splitlines())
    }
    corpus = load_corpus()
    judge_texts = {t for i in corpus.items(kind="grading") for t in (i.text, i.system) if t}
    reveal_texts = tuple(i.text for i in corpus.items(kind="cot_reveal"))
    calls: dict[str, list[CallView]] = defaultdict(list)
    for line in (folder / "events.jsonl").read_bytes().splitlines():
        view = view_of(event_decoder.decode(line))
        lab = labels[view.account_id]
        if lab.label == "distiller" or lab.tactic in COVER:
            calls[view.account_id].append(view)
    # response length standardised within its prompt kind (log scale), so that an account's mix of
    # kinds (content) does not count, only whether its answers are longer or shorter than the kind's
    log_lengths: dict[str, list[float]] = defaultdict(list)
    kinds: dict[str, str] = {}
    for views in calls.values():
        for v in views:
            kinds[v.event_id] = _call_kind(v, judge_texts, reveal_texts)
            if v.response_text:
                log_lengths[kinds[v.event_id]].append(math.log(len(v.response_text)))
    scale = {k: (statistics.mean(v), statistics.pstdev(v) or 1.0) for k, v in log_lengths.items()}
    rows, y, groups, names = [], [], [], []
    for account_id, views in sorted(calls.items()):
        if len(views) < 3:
            continue
        lab, record = labels[account_id], records[account_id]
        first: datetime = views[0].ts
        ips = Counter(v.client_ip for v in views)
        days = {v.ts.date() for v in views}
        gaps = [(b.ts - a.ts).total_seconds() for a, b in itertools.pairwise(views)]
        hours = Counter(v.ts.hour for v in views)
        hour_entropy = -sum(c / len(views) * math.log(c / len(views)) for c in hours.values())
        residuals = [
            (math.log(len(v.response_text)) - scale[kinds[v.event_id]][0]) / scale[kinds[v.event_id]][1]
            for v in views
            if v.response_text
        ]
        temperatures = [v.temperature for v in views if v.temperature is not None]
        budgets = [v.max_tokens for v in views if v.max_tokens is not None]
        row = [
            ips.most_common(1)[0][1] / len(views),
            math.log(len(ips)),
            *_shares([_ua_family(v.client_user_agent) for v in views], UA_FAMILIES),
            *_shares([ASN_KIND.get(v.client_asn or 0, "other") for v in views], NETWORK_KINDS),
            len({v.client_tls_fingerprint for v in views}),
            *_shares([v.client_tls_fingerprint for v in views], TLS),
            (first - record.created_at).total_seconds() / 86_400,
            *[float(_mail_kind(record.email_domain) == k) for k in MAIL_KINDS],
            *[float(record.tier == t) for t in TIERS],
            float(record.signup_ip in ips),
            len({v.key_id for v in views}),
            sum(v.end_user is not None for v in views) / len(views),
            sum(v.client_router is not None for v in views) / len(views),
            len(budgets) / len(views),
            math.log(statistics.mean(budgets)) if budgets else 0.0,
            len(temperatures) / len(views),
            statistics.mean(temperatures) if temperatures else -1.0,
            sum(t == 0 for t in temperatures) / len(views),
            sum(v.top_p is not None for v in views) / len(views),
            sum((v.n or 1) > 1 for v in views) / len(views),
            statistics.mean(v.n or 1 for v in views),
            sum(v.stream for v in views) / len(views),
            len(views) / len(days),
            len(days),
            hour_entropy,
            math.log(1 + statistics.median(gaps)) if gaps else 0.0,
            statistics.mean(residuals) if residuals else 0.0,
            statistics.pstdev(residuals) if len(residuals) > 1 else 0.0,
        ]
        rows.append([float(x) for x in row])
        y.append(int(lab.label == "distiller"))
        groups.append(lab.actor or account_id)  # one actor's accounts never straddle train and test
        names.append(lab.tactic)
    group_ids = {g: i for i, g in enumerate(sorted(set(groups)))}
    return np.array(rows), np.array(y), np.array([group_ids[g] for g in groups]), names


def cross_validated_auc(folder: Path) -> float:
    features, y, groups, _ = metadata_features(folder)
    model = RandomForestClassifier(n_estimators=300, min_samples_leaf=2, random_state=0, n_jobs=1)
    folds = StratifiedGroupKFold(n_splits=5, shuffle=True, random_state=0)
    scores = cross_val_predict(model, features, y, groups=groups, cv=folds, method="predict_proba")[:, 1]
    return float(roc_auc_score(y, scores))


@pytest.fixture(scope="module")
def careful_small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("careful_small")
    generate(load_preset("careful-small"), seed=11, split="test", out=out)
    return out


def test_metadata_and_parameters_cannot_tell_careful_distillers_from_benign(
    careful_small: Path, tmp_path: Path
) -> None:
    careful = cross_validated_auc(careful_small)
    generate(load_preset("small"), seed=11, split="test", out=tmp_path / "small")
    standard = cross_validated_auc(tmp_path / "small")
    print(f"metadata+params classifier ROC AUC: careful-small {careful:.3f}, small (standard) {standard:.3f}")
    assert careful <= 0.65


def test_careful_output_is_byte_identical_for_the_same_seed(tmp_path: Path) -> None:
    scenario = load_preset("careful-small")
    scenario.days = 2
    digests = []
    for run in ("a", "b"):
        generate(scenario, seed=4, split="dev", out=tmp_path / run)
        digests.append(
            tuple(
                hashlib.sha256((tmp_path / run / name).read_bytes()).hexdigest()
                for name in ("events.jsonl", "accounts.jsonl", "labels.jsonl")
            )
        )
    assert digests[0] == digests[1]
