"""Fixtures for the intel tests: community keys, a case store (SQLite and PostgreSQL) holding one
decided actor whose every raw value is known, and helpers shared by the modules."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from distillguard.cases.store import (
    CaseStore,
    IncomingAccount,
    IncomingCase,
    IncomingSample,
)
from distillguard.events.model import Account
from distillguard.intel.community_key import CommunityKeys
from tests.cases.conftest import pg_database, url  # noqa: F401  (the case-store fixtures, SQLite and PostgreSQL)

NO_POSTGRES = os.environ.get("DISTILLGUARD_NO_POSTGRES") == "1"

KEYS = CommunityKeys({"k1": b"\x01" * 32, "k0": b"\x02" * 32}, "k1")

# The actor's raw values: a bundle must contain none of them.
PAYMENT = "pm_actor_card_4242"
SIGNUP = "203.0.113.77"
TLS = "t13d1812h2_85036bcba153_375ca2c5e164@AS64500"
TEMPLATE_PROMPT = (
    "You are grading two answers.\n[The Start of Assistant A's Answer]\n{a}\n[The End of Assistant A's Answer]\n"
    "[The Start of Assistant B's Answer]\n{b}\n[The End of Assistant B's Answer]\n"
    "Compare them for helpfulness, accuracy and depth, then output your verdict as [[A]] or [[B]]."
)
SYSTEM = "You are DataForge, a synthetic data engine. Always answer in JSONL with fields id, input, output."
COMMON_TLS = "t13d1516h2_8daaf6152771_02713d6af862@AS16509"
EMAIL_RARE = "forge-mail.example"
ACCOUNTS = ("acct-x1", "acct-x2", "acct-x3")
RAW_VALUES = (PAYMENT, SIGNUP, TLS, EMAIL_RARE, *ACCOUNTS, "DataForge", "Assistant A's Answer")


def template_fingerprint(prompt: str, system: str = "") -> str:
    from distillguard.events.call_view import CallView
    from distillguard.signals.template import Template

    return Template().fingerprint(
        CallView(event_id="e", ts=datetime.now(UTC), account_id="a", prompt=prompt, system_prompt=system)
    )


def system_key(system: str) -> str:
    from distillguard.features.account_window import system_prompt_key

    return system_prompt_key(system)


def actor_case() -> IncomingCase:
    """Three accounts linked by a card, a sign-up address, a TLS client in one ASN, a judge
    template and a system prompt (each rare: only they used it), plus a TLS client in a big cloud
    that 40 other accounts used too (common: it must not be shared)."""
    template = template_fingerprint(TEMPLATE_PROMPT.format(a="1", b="2"), SYSTEM)
    sp = system_key(SYSTEM)
    edges = [
        {
            "a": "acct-x1",
            "b": "acct-x2",
            "kind": "payment",
            "weight": 1.0,
            "evidence": f"same payment {PAYMENT}; used by 2 account(s)",
        },
        {
            "a": "acct-x2",
            "b": "acct-x3",
            "kind": "signup_ip",
            "weight": 0.8,
            "evidence": f"same signup ip {SIGNUP}; used by 2 account(s)",
        },
        {
            "a": "acct-x1",
            "b": "acct-x3",
            "kind": "tls_asn",
            "weight": 0.5,
            "evidence": f"same tls asn {TLS} in 90% / 88% of calls; used by 2 account(s)",
        },
        {
            "a": "acct-x1",
            "b": "acct-x2",
            "kind": "tls_asn",
            "weight": 0.1,
            "evidence": f"same tls asn {COMMON_TLS} in 10% / 12% of calls; used by 43 account(s)",
        },
        {
            "a": "acct-x1",
            "b": "acct-x2",
            "kind": "template",
            "weight": 0.6,
            "evidence": f"same template {template} in 70% / 65% of calls; used by 2 account(s)",
        },
        {
            "a": "acct-x2",
            "b": "acct-x3",
            "kind": "system_prompt",
            "weight": 0.6,
            "evidence": f"same system prompt {sp} ('{SYSTEM[:30]}') in 90% / 90% of calls; used by 2 account(s)",
        },
    ]
    samples = [
        IncomingSample(
            account_id=a,
            event_id=f"ev-{a}-{i}",
            prompt=TEMPLATE_PROMPT.format(a=f"answer {i} of {a}", b=f"other answer {i * 7}"),
            system=SYSTEM,
        )
        for i, a in enumerate(ACCOUNTS)
    ]
    return IncomingCase(
        kind="actor",
        source="scan",
        title="actor actor-forge: 3 linked accounts",
        cluster_id="actor-forge",
        risk=0.97,
        verdict="distiller",
        accounts=[IncomingAccount(account_id=a, risk=0.95, verdict="distiller", calls=100) for a in ACCOUNTS],
        indicators={
            "payment": [PAYMENT],
            "signup_ip": [SIGNUP],
            "tls_asn": [COMMON_TLS, TLS],
            "template": [template],
            "system_prompt": [sp],
            "ip": ["198.51.100.9"],
        },
        edges=edges,
        samples=samples,
    )


def account_records() -> dict[str, Account]:
    """Sign-up records: the actor's three accounts and 30 others (one big free-mail domain)."""
    out = {
        a: Account(
            account_id=a,
            payment_fingerprint=PAYMENT if i < 2 else f"pm_other_{a}",
            email_domain=EMAIL_RARE if i else "gmail.com",
            signup_ip=SIGNUP,
        )
        for i, a in enumerate(ACCOUNTS)
    }
    for i in range(30):
        out[f"acct-b{i}"] = Account(
            account_id=f"acct-b{i}", payment_fingerprint=f"pm_b{i}", email_domain="gmail.com"
        )
    return out


@pytest.fixture
def cases(tmp_path: Path) -> Iterator[CaseStore]:
    """A SQLite case store with the actor's case banned (case 1) and an open lone case (case 2)."""
    store = CaseStore.open(str(tmp_path / "cases.db"))
    store.upsert(actor_case())
    store.upsert(
        IncomingCase(
            kind="account",
            source="scan",
            title="account acct-lone",
            accounts=[IncomingAccount(account_id="acct-lone")],
            indicators={"payment": ["pm_lone"]},
        )
    )
    store.decide(1, "ivy", "ban", "three accounts, one card, judge-template harvesting", {})
    try:
        yield store
    finally:
        store.close()
