"""Per-account state over a time window, built only from mergeable reducers, and its feature vector.

The gateway calls `AccountWindow.observe` once per call; the batch scan builds the same states in
bulk (`distillguard.features.bulk`) and merges them. `features()` is cheap after any observe, so
replaying an account's calls in time order (to find the first call after which it would have been
flagged) costs one dictionary per call.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta

import numpy as np

from distillguard.events.call_view import CallView
from distillguard.features.reducers import (
    Dispersion,
    Distinct,
    Gaps,
    HeavyHitters,
    Histogram,
    MeanVar,
    MinMax,
    hash_int,
    hash_text,
)
from distillguard.signals.template import skeleton

# The per-call signals whose scores are aggregated, in feature-vector order.
SIGNAL_NAMES: tuple[str, ...] = (
    "cot_extraction",
    "reasoning_leak",
    "grading_request",
    "generation_request",
    "logit_probe",
)
FIRES_AT = 0.5  # a signal "fires" on a call when its score is at least this
BUCKET_MS = 5 * 60 * 1000  # activity buckets for synchronised-activity linking
HOUR_MS = 3_600_000
DAY_MS = 86_400_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)

# Sketch sizes: exact up to these many distinct items, then estimates (see reducers.Distinct).
K_PROMPTS = 256
K_TEMPLATES = 256
K_HOURS = 512
K_DAYS = 366
K_BUCKETS = 512
K_SMALL = 64
HH_TEMPLATES = 32
HH_SYSTEM = 16
HH_END_USERS = 16
HH_IPS = 16
HH_TLS = 16
HH_PARAMS = 8


# Identifiers repeat across an account's calls (its IPs, SDK, templates, end users): hashing each
# distinct one once keeps per-call observe cheap. Prompts are mostly unique and are not cached.
hash_identifier = functools.lru_cache(maxsize=1 << 16)(hash_text)


def epoch_ms(ts: datetime) -> int:
    """Milliseconds since the epoch, exactly (the store keeps ms; floats would round)."""
    return (ts - _EPOCH) // _MS


@functools.lru_cache(maxsize=4096)
def param_key(temperature: float | None, top_p: float | None, n: int | None, max_tokens: int | None) -> str:
    """The sampling-parameter profile of a call as a readable key ("t=0.7 p=- n=- max=512").

    >>> param_key(0.7, None, 1, 512)
    't=0.7 p=- n=1 max=512'
    """

    def fmt(value: float | int | None) -> str:
        return "-" if value is None else repr(value)

    return f"t={fmt(temperature)} p={fmt(top_p)} n={fmt(n)} max={fmt(max_tokens)}"


def system_prompt_key(system_prompt: str) -> str:
    """A short stable id for a system prompt (the text itself is kept only as a preview)."""
    return f"sp:{hash_identifier(system_prompt):016x}"


def tls_asn_key(tls_fingerprint: str, asn: int | None) -> str:
    return f"{tls_fingerprint}@AS{asn if asn is not None else '?'}"


PREVIEW_CHARS = 120
FRAME_CHARS = 400  # of a template's fixed frame, kept so linking can match paraphrased templates


def template_frame(prompt: str) -> str:
    """The fixed frame of a prompt (the template signal's skeleton; the normalised prompt when
    nothing fixed is left), cut to `FRAME_CHARS`: what accounts running one template share."""
    frame = skeleton(prompt)[0]
    if not frame.replace("\x01", "").strip():
        frame = " ".join(prompt.split()).lower()
    return frame[:FRAME_CHARS]


class SignalStats:
    """How often one signal scored, fired (score ≥ 0.5), and its mean score when it scored."""

    __slots__ = ("fired", "scores")

    def __init__(self) -> None:
        self.scores = MeanVar()
        self.fired = 0

    def observe(self, score: float) -> None:
        self.scores.observe(score)
        if score >= FIRES_AT:
            self.fired += 1

    def merge(self, other: SignalStats) -> None:
        self.scores.merge(other.scores)
        self.fired += other.fired


class AccountWindow:
    """All the mergeable state DistillGuard keeps about one account over one window.

    >>> from distillguard.events.call_view import CallView
    >>> w = AccountWindow()
    >>> for i in range(3):
    ...     call = CallView(event_id=str(i), ts=datetime(2026, 2, 12, 10, 0, 10 * i, tzinfo=UTC),
    ...                     account_id="a", prompt=f"Solve {i}", n_user_turns=1)
    ...     w.observe(call, {"cot_extraction": 0.9}, fingerprint="solve-N")
    >>> f = w.features()
    >>> f["n_calls"], f["top_template_share"], f["cot_extraction_fire_rate"], f["gap_regular_share"]
    (3.0, 1.0, 1.0, 1.0)
    """

    def __init__(self, signal_names: Iterable[str] = SIGNAL_NAMES) -> None:
        self.signal_names = tuple(signal_names)
        self.n = 0
        self.seen = MinMax()  # first and last call, epoch ms
        self.hours = Distinct(K_HOURS)
        self.days = Distinct(K_DAYS)
        self.buckets = Distinct(K_BUCKETS)
        self._last_bucket = -1  # a cache for observe, not state: merge and bulk ignore it
        self.hour_of_day = Histogram(24)
        self.gaps = Gaps()
        self.prompts = Distinct(K_PROMPTS)
        self.templates = HeavyHitters(HH_TEMPLATES)
        self.template_count = Distinct(K_TEMPLATES)
        self.template_frames: dict[str, str] = {}  # fingerprint -> frame, for the heavy hitters
        self.system_prompts = HeavyHitters(HH_SYSTEM)
        self.system_prompt_count = Distinct(K_SMALL)
        self.system_previews: dict[str, str] = {}
        self.signals = {name: SignalStats() for name in self.signal_names}
        self.any_fired = 0
        self.temperature = MeanVar()
        self.temperature_zero = 0
        self.top_p_set = 0
        self.n_choices = MeanVar()
        self.n_multi = 0
        self.max_tokens = MeanVar()
        self.params = HeavyHitters(HH_PARAMS)
        self.logprobs = 0
        self.top_logprobs = MeanVar()
        self.logit_bias = MeanVar()  # over calls that set logit_bias: its size
        self.stream = 0
        self.user_turns = MeanVar()
        self.single_turn = 0
        self.prompt_chars = MeanVar()
        # output lengths only over calls that were answered: a failed or empty call abstains
        # instead of counting as a zero-length answer
        self.response_chars = MeanVar()
        self.answered_prompt_chars = MeanVar()
        self.reasoning_returned = 0
        self.errors = 0
        self.end_users = HeavyHitters(HH_END_USERS)
        self.end_user_count = Distinct(K_PROMPTS)
        self.ips = HeavyHitters(HH_IPS)
        self.ip_count = Distinct(K_PROMPTS)
        self.asn_count = Distinct(K_SMALL)
        self.user_agent_count = Distinct(K_SMALL)
        self.tls = HeavyHitters(HH_TLS)  # keyed "fingerprint@ASn": TLS client within a network
        self.tls_count = Distinct(K_SMALL)
        self.routed = 0
        self.embeddings = Dispersion()

    # -- one call at a time ------------------------------------------------------------------

    def observe(
        self,
        call: CallView,
        signals: Mapping[str, float | None],
        fingerprint: str | None,
        embedding: np.ndarray | None = None,
    ) -> None:
        """Add one call. ``signals`` maps signal name to score in [0, 1] or None (abstained);
        names outside ``signal_names`` are an error, so a renamed signal cannot vanish silently."""
        ms = epoch_ms(call.ts)
        self.n += 1
        self.seen.observe(ms)
        bucket = ms // BUCKET_MS
        if bucket != self._last_bucket:  # calls of one burst share their bucket, hour and day
            self._last_bucket = bucket
            self.hours.observe(hash_int(ms // HOUR_MS))
            self.days.observe(hash_int(ms // DAY_MS))
            self.buckets.observe(hash_int(bucket))
        self.hour_of_day.observe((ms // HOUR_MS) % 24)
        self.gaps.observe(ms / 1000.0)
        self.prompts.observe(hash_text(call.prompt))
        if fingerprint:
            self.templates.observe(fingerprint)
            self.template_count.observe(hash_identifier(fingerprint))
            if fingerprint not in self.template_frames:
                self.template_frames[fingerprint] = template_frame(call.prompt)
                self._trim_frames()
        if call.system_prompt:
            key = system_prompt_key(call.system_prompt)
            self.system_prompts.observe(key)
            self.system_prompt_count.observe(hash_identifier(call.system_prompt))
            if key not in self.system_previews:
                self.system_previews[key] = call.system_prompt[:PREVIEW_CHARS]
                self._trim_previews()
        fired = False
        for name, score in signals.items():
            stats = self.signals.get(name)
            if stats is None:
                raise KeyError(f"signal {name!r} is not one of this window's signals {self.signal_names}")
            if score is not None:
                stats.observe(score)
                fired = fired or score >= FIRES_AT
        self.any_fired += fired
        if call.temperature is not None:
            self.temperature.observe(call.temperature)
            self.temperature_zero += call.temperature == 0.0
        self.top_p_set += call.top_p is not None
        if call.n is not None:
            self.n_choices.observe(call.n)
            self.n_multi += call.n > 1
        if call.max_tokens is not None:
            self.max_tokens.observe(call.max_tokens)
        self.params.observe(param_key(call.temperature, call.top_p, call.n, call.max_tokens))
        self.logprobs += call.logprobs
        if call.top_logprobs is not None:
            self.top_logprobs.observe(call.top_logprobs)
        if call.logit_bias_size > 0:
            self.logit_bias.observe(call.logit_bias_size)
        self.stream += call.stream
        self.user_turns.observe(call.n_user_turns)
        self.single_turn += call.n_user_turns <= 1
        prompt_chars = len(call.prompt) + len(call.system_prompt)
        self.prompt_chars.observe(prompt_chars)
        response_chars = len(call.response_text) + len(call.reasoning_text)
        if response_chars and call.status < 400:
            self.response_chars.observe(response_chars)
            self.answered_prompt_chars.observe(prompt_chars)
        self.reasoning_returned += bool(call.reasoning_text)
        self.errors += call.status >= 400
        if call.end_user:
            self.end_users.observe(call.end_user)
            self.end_user_count.observe(hash_identifier(call.end_user))
        if call.client_ip:
            self.ips.observe(call.client_ip)
            self.ip_count.observe(hash_identifier(call.client_ip))
        if call.client_asn is not None:
            self.asn_count.observe(hash_int(call.client_asn))
        if call.client_user_agent:
            self.user_agent_count.observe(hash_identifier(call.client_user_agent))
        if call.client_tls_fingerprint:
            self.tls.observe(tls_asn_key(call.client_tls_fingerprint, call.client_asn))
            self.tls_count.observe(hash_identifier(call.client_tls_fingerprint))
        self.routed += call.client_router is not None
        if embedding is not None:
            self.embeddings.observe(embedding)

    def _trim_previews(self) -> None:
        # previews are kept only for system prompts still in the heavy-hitter summary
        if len(self.system_previews) > 2 * HH_SYSTEM:
            self.system_previews = {
                k: v for k, v in self.system_previews.items() if k in self.system_prompts.counts
            }

    def _trim_frames(self) -> None:
        if len(self.template_frames) > 2 * HH_TEMPLATES:
            self.template_frames = {
                k: v for k, v in self.template_frames.items() if k in self.templates.counts
            }

    # -- combining -----------------------------------------------------------------------------

    def merge(self, other: AccountWindow) -> AccountWindow:
        """Fold ``other`` into this window (exact for timing when the two cover consecutive time)."""
        if other.signal_names != self.signal_names:
            raise ValueError(
                f"cannot merge windows over different signals: {self.signal_names} vs {other.signal_names}"
            )
        self.n += other.n
        for name in (
            "seen",
            "hours",
            "days",
            "buckets",
            "hour_of_day",
            "gaps",
            "prompts",
            "templates",
            "template_count",
            "system_prompts",
            "system_prompt_count",
            "temperature",
            "n_choices",
            "max_tokens",
            "params",
            "top_logprobs",
            "logit_bias",
            "user_turns",
            "prompt_chars",
            "response_chars",
            "answered_prompt_chars",
            "end_users",
            "end_user_count",
            "ips",
            "ip_count",
            "asn_count",
            "user_agent_count",
            "tls",
            "tls_count",
            "embeddings",
        ):
            getattr(self, name).merge(getattr(other, name))
        for name in (
            "any_fired",
            "temperature_zero",
            "top_p_set",
            "n_multi",
            "logprobs",
            "stream",
            "single_turn",
            "reasoning_returned",
            "errors",
            "routed",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for name, stats in other.signals.items():
            self.signals[name].merge(stats)
        for key, preview in other.system_previews.items():
            self.system_previews.setdefault(key, preview)
        self._trim_previews()
        for key, frame in other.template_frames.items():
            self.template_frames.setdefault(key, frame)
        self._trim_frames()
        return self

    # -- reading -------------------------------------------------------------------------------

    def features(self) -> dict[str, float]:
        """The feature vector, in the stable order of `feature_names` (documented in docs/features.md)."""
        n = self.n
        share = (lambda count: count / n) if n else (lambda count: 0.0)
        active_hours = self.hours.estimate()
        distinct_prompts = self.prompts.estimate()
        distinct_templates = self.template_count.estimate()
        span_ms = 0.0 if self.seen.empty else self.seen.hi - self.seen.lo
        out: dict[str, float] = {
            "n_calls": float(n),
            "active_hours": active_hours,
            "active_days": self.days.estimate(),
            "calls_per_active_hour": n / active_hours if active_hours else 0.0,
            "span_hours": span_ms / HOUR_MS,
            "hour_of_day_entropy": self.hour_of_day.entropy(),
            "gap_median_s": self.gaps.median(),
            "gap_cv": self.gaps.cv(),
            "gap_regular_share": self.gaps.regular_share(),
            "gap_burstiness": self.gaps.burstiness(),
            "distinct_prompts": distinct_prompts,
            "distinct_prompt_ratio": min(share(distinct_prompts), 1.0),
            "distinct_templates": distinct_templates,
            "distinct_template_ratio": min(distinct_templates / self.templates.n, 1.0)
            if self.templates.n
            else 0.0,
            "top_template_share": self.templates.top_share(),
            "embedded_calls": float(self.embeddings.n),
            "embedding_dispersion": self.embeddings.mean_sq_distance(),
            "topic_buckets": float(np.count_nonzero(self.embeddings.topics.counts)),
            "topic_coverage": self.embeddings.topics.entropy(),
            # topic buckets per embedded call: a topic sweep asks one question per topic, a person
            # returns to the same few subjects
            "topic_novelty": float(np.count_nonzero(self.embeddings.topics.counts))
            / min(self.embeddings.n, len(self.embeddings.topics.counts))
            if self.embeddings.n
            else 0.0,
            # distinct prompts beyond distinct templates: one template refilled with new items
            "template_refill_share": min(max(share(distinct_prompts - distinct_templates), 0.0), 1.0),
            "prompt_chars_cv": self.prompt_chars.std / self.prompt_chars.mean
            if self.prompt_chars.mean
            else 0.0,
            "system_prompt_share": share(self.system_prompts.n),
            "distinct_system_prompts": self.system_prompt_count.estimate(),
            "top_system_prompt_share": self.system_prompts.top_share(),
            "any_signal_fire_rate": share(self.any_fired),
        }
        for name in self.signal_names:
            stats = self.signals[name]
            out[f"{name}_fire_rate"] = share(stats.fired)
            out[f"{name}_mean"] = stats.scores.mean
        out.update(
            {
                "temperature_set_share": share(self.temperature.n),
                "temperature_mean": self.temperature.mean,
                "temperature_std": self.temperature.std,
                "temperature_zero_share": share(self.temperature_zero),
                "top_p_set_share": share(self.top_p_set),
                "n_mean": self.n_choices.mean,
                "n_multi_share": share(self.n_multi),
                "max_tokens_set_share": share(self.max_tokens.n),
                "max_tokens_mean": self.max_tokens.mean,
                "param_profile_top_share": self.params.top_share(),
                "logprobs_share": share(self.logprobs),
                "top_logprobs_mean": self.top_logprobs.mean,
                "logit_bias_share": share(self.logit_bias.n),
                "logit_bias_size_mean": self.logit_bias.mean,
                "stream_share": share(self.stream),
                "single_turn_share": share(self.single_turn),
                "user_turns_mean": self.user_turns.mean,
                "prompt_chars_mean": self.prompt_chars.mean,
                "response_chars_mean": self.response_chars.mean,
                "output_input_ratio": (self.response_chars.total + 1.0)
                / (self.answered_prompt_chars.total + 1.0)
                if self.response_chars.n
                else 0.0,
                "answered_share": share(self.response_chars.n),
                "reasoning_returned_share": share(self.reasoning_returned),
                "error_share": share(self.errors),
                "end_user_share": share(self.end_users.n),
                "distinct_end_users": self.end_user_count.estimate(),
                "top_end_user_share": self.end_users.top_share(),
                "distinct_ips": self.ip_count.estimate(),
                "top_ip_share": self.ips.top_share(),
                "distinct_asns": self.asn_count.estimate(),
                "distinct_user_agents": self.user_agent_count.estimate(),
                "distinct_tls_fingerprints": self.tls_count.estimate(),
                "router_share": share(self.routed),
            }
        )
        return out

    @property
    def first_seen(self) -> datetime | None:
        return None if self.seen.empty else _EPOCH + int(self.seen.lo) * _MS

    @property
    def last_seen(self) -> datetime | None:
        return None if self.seen.empty else _EPOCH + int(self.seen.hi) * _MS


def feature_names(signal_names: Iterable[str] = SIGNAL_NAMES) -> list[str]:
    """The names of `AccountWindow.features()`, in order, for a model's column list."""
    return list(AccountWindow(signal_names).features())
