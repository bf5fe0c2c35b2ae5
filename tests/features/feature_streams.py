"""Hand-made call streams for feature tests."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import msgspec
import numpy as np
import pyarrow as pa

from distillguard.events.call_view import VIEW_SCHEMA, CallView
from distillguard.features.account_window import SIGNAL_NAMES

PROFILES = [
    (None, None, None, None),
    (0.0, None, 1, 256),
    (0.7, 0.9, None, 4096),
    (1.0, None, 4, None),
    (0.7, None, None, None),
]
T0 = datetime(2026, 2, 12, 20, 0, tzinfo=UTC)


def random_calls(
    seed: int, accounts: int = 6, calls: int = 300
) -> list[tuple[CallView, dict, str | None, int]]:
    """Mixed traffic over a few accounts: (view, signal scores, fingerprint, embedding row or -1)."""
    rng = random.Random(seed)
    out = []
    t = {f"acct-{a}": T0 + timedelta(seconds=rng.randrange(3600)) for a in range(accounts)}
    for i in range(calls):
        account = f"acct-{rng.randrange(accounts)}"
        t[account] += timedelta(milliseconds=rng.choice([30_000, 30_000, rng.randrange(1, 4_000_000)]))
        # few enough parameter profiles, IPs and end users that heavy-hitter summaries stay exact
        temperature, top_p, n, max_tokens = rng.choice(PROFILES)
        view = CallView(
            event_id=f"e{i}",
            ts=t[account],
            account_id=account,
            end_user=rng.choice([None, None, f"u{rng.randrange(12)}"]),
            client_ip=rng.choice(["10.0.0.1", "10.0.0.2", f"203.0.113.{rng.randrange(10)}"]),
            client_asn=rng.choice([None, 64500, 64501]),
            client_user_agent=rng.choice([None, "openai-python/1.54.0", "curl/8"]),
            client_tls_fingerprint=rng.choice([None, "t13d_aaa", "t13d_bbb"]),
            client_router=rng.choice([None, None, "openrouter"]),
            status=rng.choice([200, 200, 200, 429]),
            system_prompt=rng.choice(["", "", "You are a helpful assistant.", "Think step by step."]),
            prompt=rng.choice(["What is 2+2?", f"Solve problem {rng.randrange(100)}", "Rank these answers"]),
            n_user_turns=rng.choice([1, 1, 3]),
            temperature=temperature,
            top_p=top_p,
            n=n,
            max_tokens=max_tokens,
            logprobs=rng.random() < 0.2,
            top_logprobs=rng.choice([None, 5]),
            logit_bias_size=rng.choice([0, 0, 3]),
            stream=rng.random() < 0.3,
            response_text="ok" * rng.randrange(50),
            reasoning_text=rng.choice(["", "", "thinking..."]),
        )
        signals = {name: rng.choice([None, rng.random()]) for name in SIGNAL_NAMES}
        fingerprint = rng.choice([None, "tpl-solve", "tpl-rank", f"tpl-{rng.randrange(10)}"])
        out.append((view, signals, fingerprint, i if rng.random() < 0.5 else -1))
    return out


def table_of(views: list[CallView]) -> pa.Table:
    return pa.Table.from_pylist([msgspec.structs.asdict(v) for v in views], schema=VIEW_SCHEMA)


def embeddings_for(n: int, seed: int = 0, dim: int = 16) -> np.ndarray:
    vectors = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
