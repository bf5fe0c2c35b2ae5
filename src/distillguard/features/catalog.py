"""The account features, each declared once: its name, provenance, what it reads of a call (a
column expression over the call store's schema), the mergeable state it is reduced into, and how
the feature is finished from that state.

Everything else is derived from these two tables: `AccountWindow` (observe one call, merge, read
the features: the gateway), and the bulk path of `distillguard.features.columnar` (every account's
state and the features at every checkpoint from Arrow columns: the scan). A new feature is a line
here; a test checks that the two paths agree on random traffic.

`MEASURES` are states several features (or linking) read; a feature with a state of its own declares
it inline. Finishing functions read statistics by name (``s.gaps.cv``) and work the same on one
window's numbers and on arrays of them, so they are written once too.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from distillguard.features.columns import (
    EMBEDDING,
    FINGERPRINT,
    SIGNAL_PREFIX,
    EpochMs,
    Expr,
    any_of,
    apply,
    col,
    first_chars,
    hashed_int,
    hashed_text,
    length,
    true,
)
from distillguard.features.provenance import (
    BEHAVIOUR,
    CONTENT,
    METADATA,
    PROVENANCES,
    REQUEST_PARAMS,
    signal_provenance,
)
from distillguard.features.reducers import (
    Count,
    Dispersion,
    Distinct,
    FirstValues,
    Gaps,
    HeavyHitters,
    Histogram,
    MeanVar,
    MinMax,
    SignalStats,
    hash_text,
)
from distillguard.signals.base import TextMemo
from distillguard.signals.template import skeleton

# The per-call signals whose scores are aggregated, in feature-vector order.
SIGNAL_NAMES: tuple[str, ...] = (
    "cot_extraction",
    "reasoning_leak",
    "grading_request",
    "generation_request",
    "logit_probe",
)
# cot_extraction's sub-scores are tracked as signals of their own at account level: a tutoring app
# demands steps, a distiller asks for hidden reasoning or sends a distillation system prompt.
COT_PARTS = ("reveal_hidden", "step_by_step", "distill_template")
ACCOUNT_SIGNALS: tuple[str, ...] = SIGNAL_NAMES + tuple(f"cot_extraction.{p}" for p in COT_PARTS)
SCORED_SIGNALS: tuple[str, ...] = SIGNAL_NAMES
FIRES_AT = SignalStats.FIRES_AT  # a signal "fires" on a call when its score is at least this

# Embeddings are an estimate of diversity: the first calls of an account, then a thinning sample.
EMBED_FIRST = 24
EMBED_EVERY = 8
EMBED_MAX = 96

BUCKET_MS = 5 * 60 * 1000  # activity buckets for synchronised-activity linking
HOUR_MS = 3_600_000
DAY_MS = 86_400_000

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
PREVIEW_CHARS = 120
FRAME_CHARS = 400  # of a template's fixed frame, kept so linking can match paraphrased templates

# Identifiers repeat across an account's calls (its IPs, SDK, templates, end users): hashing each
# distinct one once keeps per-call observe cheap. Prompts are mostly unique and are not cached.
hash_identifier = functools.lru_cache(maxsize=1 << 16)(hash_text)


def embedding_sampled(position: int, prompt: str, embedded_before: int) -> bool:
    """Whether the call at ``position`` (1-based) of its account gets a prompt embedding."""
    if not prompt or embedded_before >= EMBED_MAX:
        return False
    return position <= EMBED_FIRST or position % EMBED_EVERY == 0


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


# The scan works out the frame of each account's first call with a template in every batch, and
# most of those prompts came in an earlier batch (worker 0's first 4 days of the default preset:
# 39,472 frames of 10,629 distinct prompts of ~510 characters): the frame, pure in the prompt, is
# remembered for FRAME_MEMO prompts, least recently used out (8,192 keep 99.7% of the repeats an
# unbounded memo would, in ~4 MB).
FRAME_MEMO = 1 << 13


def _template_frame(prompt: str) -> str:
    """The fixed frame of a prompt (the template signal's skeleton; the normalised prompt when
    nothing fixed is left), cut to `FRAME_CHARS`: what accounts running one template share."""
    frame = skeleton(prompt)[0]
    if not frame.replace("\x01", "").strip():
        frame = " ".join(prompt.split()).lower()
    return frame[:FRAME_CHARS]


template_frame = TextMemo(_template_frame, maxsize=FRAME_MEMO)
# The frame measure's value: a scan that fingerprints a batch has each row's frame already
# (`Template.fingerprints_and_frames`) and hands it to `measure_columns` for this expression.
TEMPLATE_FRAME = apply("template_frame", template_frame, col("prompt"), cached=False)


Reducer = (
    Count
    | MeanVar
    | MinMax
    | Distinct
    | HeavyHitters
    | Histogram
    | Gaps
    | Dispersion
    | SignalStats
    | FirstValues
)


@dataclass(frozen=True)
class Measure:
    """State kept per account: ``reducer`` (an empty state that specifies the kind) is fed ``reads``
    of every call that satisfies ``where`` (every call when None). ``reads`` may be a tuple of
    expressions (the reducer gets a tuple), or None for a reducer that counts calls."""

    name: str
    reducer: Reducer
    reads: Expr | tuple[Expr, ...] | None = None
    where: Expr | None = None
    # evidence kept only for the keys another measure still summarises (FirstValues.keep_only)
    keys_of: str | None = None

    def columns(self) -> set[str]:
        reads = () if self.reads is None else self.reads if isinstance(self.reads, tuple) else (self.reads,)
        where = () if self.where is None else (self.where,)
        return set().union(*(e.columns() for e in (*reads, *where)))


@dataclass(frozen=True)
class Feature:
    """One number of the feature vector: ``finish`` reads statistics (``s.<measure>.<stat>``, see
    each reducer's ``read``) and must work on floats and on NumPy arrays alike."""

    name: str
    provenance: str
    finish: Callable[[Any], Any]
    measure: Measure | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.provenance not in PROVENANCES:
            raise ValueError(
                f"feature {self.name!r}: provenance {self.provenance!r} is not one of {PROVENANCES}"
            )


# -- finishing helpers: the same on one window's floats and on arrays of checkpoints ------------


def ratio(a: Any, b: Any) -> Any:
    """a / b, and 0 where b is 0."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.broadcast_arrays(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64))
        return np.divide(a, b, out=np.zeros(a.shape), where=b != 0)
    return a / b if b else 0.0


def clip(x: Any, lo: float, hi: float) -> Any:
    if isinstance(x, np.ndarray):
        return np.minimum(np.maximum(x, lo), hi)
    return min(max(x, lo), hi)


def when(condition: Any, value: Any) -> Any:
    """``value`` where ``condition`` holds, else 0."""
    if isinstance(condition, np.ndarray):
        return np.where(condition, value, 0.0)
    return value if condition else 0.0


def share(s: Any, count: Any) -> Any:
    """A count as a share of the account's calls."""
    return ratio(count, s.calls.count)


def share_of(name: str, provenance: str, where: Expr) -> Feature:
    """The share of calls satisfying ``where``."""
    return Feature(name, provenance, lambda s: share(s, s[name].count), Measure(name, Count(), where=where))


def set_share(name: str, provenance: str, measure: str) -> Feature:
    """The share of calls a measure observed (calls that set a parameter, say)."""
    return Feature(name, provenance, lambda s: share(s, s[measure].n))


# -- what the features read ----------------------------------------------------------------------

MS = EpochMs().shared()
PROMPT_CHARS = (length(col("prompt")) + length(col("system_prompt"))).shared()
RESPONSE_CHARS = (length(col("response_text")) + length(col("reasoning_text"))).shared()
# output lengths only over calls that were answered: a failed or empty call abstains instead of
# counting as a zero-length answer
ANSWERED = ((RESPONSE_CHARS > 0) & (col("status") < 400)).shared()
SYSTEM_PROMPT_KEY = apply("system_prompt_key", system_prompt_key, col("system_prompt")).shared()
_NONEMPTY = {
    name: col(name).nonempty().shared()
    for name in (FINGERPRINT, "system_prompt", "end_user", "client_ip", "client_tls_fingerprint")
}


def _nonempty(name: str) -> Expr:
    return _NONEMPTY.get(name) or col(name).nonempty()


MEASURES: tuple[Measure, ...] = (
    Measure("calls", Count()),
    Measure("seen", MinMax(), reads=MS),  # first and last call, epoch ms
    Measure("hours", Distinct(K_HOURS), reads=hashed_int(MS // HOUR_MS)),
    Measure("days", Distinct(K_DAYS), reads=hashed_int(MS // DAY_MS)),
    Measure("buckets", Distinct(K_BUCKETS), reads=hashed_int(MS // BUCKET_MS)),
    Measure("hour_of_day", Histogram(24), reads=(MS // HOUR_MS) % 24),
    Measure("gaps", Gaps(), reads=MS / 1000.0),
    Measure("prompts", Distinct(K_PROMPTS), reads=hashed_text(col("prompt"), cached=False)),
    Measure("templates", HeavyHitters(HH_TEMPLATES), reads=col(FINGERPRINT), where=_nonempty(FINGERPRINT)),
    Measure(
        "template_count",
        Distinct(K_TEMPLATES),
        reads=hashed_text(col(FINGERPRINT)),
        where=_nonempty(FINGERPRINT),
    ),
    Measure(
        "system_prompts",
        HeavyHitters(HH_SYSTEM),
        reads=SYSTEM_PROMPT_KEY,
        where=_nonempty("system_prompt"),
    ),
    Measure(
        "system_prompt_count",
        Distinct(K_SMALL),
        reads=hashed_text(col("system_prompt")),
        where=_nonempty("system_prompt"),
    ),
    Measure(
        "system_previews",
        FirstValues(limit=2 * HH_SYSTEM),
        reads=(SYSTEM_PROMPT_KEY, first_chars(col("system_prompt"), PREVIEW_CHARS)),
        where=_nonempty("system_prompt"),
        keys_of="system_prompts",
    ),
    Measure(  # each heavy-hitter template's fixed frame, so linking can match paraphrased templates
        "template_frames",
        FirstValues(limit=2 * HH_TEMPLATES),
        reads=(col(FINGERPRINT), TEMPLATE_FRAME),
        where=_nonempty(FINGERPRINT),
        keys_of="templates",
    ),
    Measure("temperature", MeanVar(), reads=col("temperature"), where=col("temperature").is_set()),
    Measure("n_choices", MeanVar(), reads=col("n"), where=col("n").is_set()),
    Measure("max_tokens", MeanVar(), reads=col("max_tokens"), where=col("max_tokens").is_set()),
    Measure(
        "params",
        HeavyHitters(HH_PARAMS),
        reads=apply("param_key", param_key, col("temperature"), col("top_p"), col("n"), col("max_tokens")),
    ),
    Measure("logit_bias", MeanVar(), reads=col("logit_bias_size"), where=col("logit_bias_size") > 0),
    Measure("prompt_chars", MeanVar(), reads=PROMPT_CHARS),
    Measure("response_chars", MeanVar(), reads=RESPONSE_CHARS, where=ANSWERED),
    Measure("answered_prompt_chars", MeanVar(), reads=PROMPT_CHARS, where=ANSWERED),
    Measure("end_users", HeavyHitters(HH_END_USERS), reads=col("end_user"), where=_nonempty("end_user")),
    Measure(
        "end_user_count", Distinct(K_PROMPTS), reads=hashed_text(col("end_user")), where=_nonempty("end_user")
    ),
    Measure("ips", HeavyHitters(HH_IPS), reads=col("client_ip"), where=_nonempty("client_ip")),
    Measure(
        "ip_count", Distinct(K_PROMPTS), reads=hashed_text(col("client_ip")), where=_nonempty("client_ip")
    ),
    Measure(
        "tls",  # keyed "fingerprint@ASn": a TLS client within a network
        HeavyHitters(HH_TLS),
        reads=apply("tls_asn_key", tls_asn_key, col("client_tls_fingerprint"), col("client_asn")),
        where=_nonempty("client_tls_fingerprint"),
    ),
    Measure("embeddings", Dispersion(), reads=col(EMBEDDING), where=col(EMBEDDING).is_set()),
)


def signal_measures(signal_names: Sequence[str]) -> tuple[Measure, ...]:
    """One `SignalStats` per signal (a score, or null when the signal abstained), and whether any fired."""
    scores = tuple(col(SIGNAL_PREFIX + name) for name in signal_names)
    return (
        *(
            Measure(SIGNAL_PREFIX + name, SignalStats(), reads=score, where=score.is_set())
            for name, score in zip(signal_names, scores, strict=True)
        ),
        Measure("any_fired", Count(), where=any_of([score >= FIRES_AT for score in scores])),
    )


def _signal_features(signal_names: Sequence[str]) -> list[Feature]:
    out = [Feature("any_signal_fire_rate", CONTENT, lambda s: share(s, s.any_fired.count))]
    for name in signal_names:
        provenance = signal_provenance(name)
        out.append(Feature(f"{name}_fire_rate", provenance, _fire_rate(SIGNAL_PREFIX + name)))
        out.append(Feature(f"{name}_mean", provenance, _mean_score(SIGNAL_PREFIX + name)))
    return out


def _fire_rate(measure: str) -> Callable[[Any], Any]:
    return lambda s: share(s, s[measure].fired)


def _mean_score(measure: str) -> Callable[[Any], Any]:
    return lambda s: s[measure].mean


def _distinct_prompts(s: Any) -> Any:
    return s.prompts.estimate


def _topics_per_embedded(s: Any) -> Any:
    embedded = s.embeddings.n
    limit = np.minimum(embedded, 64.0) if isinstance(embedded, np.ndarray) else min(embedded, 64.0)
    return ratio(s.embeddings.topics, limit)


def feature_declarations(signal_names: Sequence[str] = SIGNAL_NAMES) -> tuple[Feature, ...]:
    """Every feature, in the stable order of the feature vector (documented in docs/features.md)."""
    return (
        # volume and timing
        Feature("n_calls", BEHAVIOUR, lambda s: s.calls.count),
        Feature("active_hours", BEHAVIOUR, lambda s: s.hours.estimate),
        Feature("active_days", BEHAVIOUR, lambda s: s.days.estimate),
        Feature("calls_per_active_hour", BEHAVIOUR, lambda s: ratio(s.calls.count, s.hours.estimate)),
        Feature("span_hours", BEHAVIOUR, lambda s: s.seen.span / HOUR_MS),
        Feature("hour_of_day_entropy", BEHAVIOUR, lambda s: s.hour_of_day.entropy),
        Feature("gap_median_s", BEHAVIOUR, lambda s: s.gaps.median),
        Feature("gap_cv", BEHAVIOUR, lambda s: s.gaps.cv),
        Feature("gap_regular_share", BEHAVIOUR, lambda s: s.gaps.regular_share),
        Feature("gap_burstiness", BEHAVIOUR, lambda s: s.gaps.burstiness),
        # diversity and reuse of what is asked
        Feature("distinct_prompts", BEHAVIOUR, _distinct_prompts),
        Feature("distinct_prompt_ratio", BEHAVIOUR, lambda s: clip(share(s, s.prompts.estimate), 0.0, 1.0)),
        Feature("distinct_templates", BEHAVIOUR, lambda s: s.template_count.estimate),
        Feature(
            "distinct_template_ratio",
            BEHAVIOUR,
            lambda s: clip(ratio(s.template_count.estimate, s.templates.n), 0.0, 1.0),
        ),
        Feature("top_template_share", BEHAVIOUR, lambda s: s.templates.top_share),
        Feature("embedded_calls", BEHAVIOUR, lambda s: s.embeddings.n),
        Feature("embedding_dispersion", CONTENT, lambda s: s.embeddings.mean_sq_distance),
        Feature("topic_buckets", CONTENT, lambda s: s.embeddings.topics),
        Feature("topic_coverage", CONTENT, lambda s: s.embeddings.topic_entropy),
        # topic buckets per embedded call: a topic sweep asks one question per topic, a person returns
        # to the same few subjects
        Feature("topic_novelty", CONTENT, _topics_per_embedded),
        # distinct prompts beyond distinct templates: one template refilled with new items
        Feature(
            "template_refill_share",
            BEHAVIOUR,
            lambda s: clip(share(s, s.prompts.estimate - s.template_count.estimate), 0.0, 1.0),
        ),
        Feature("prompt_chars_cv", CONTENT, lambda s: ratio(s.prompt_chars.std, s.prompt_chars.mean)),
        set_share("system_prompt_share", CONTENT, "system_prompts"),
        Feature("distinct_system_prompts", CONTENT, lambda s: s.system_prompt_count.estimate),
        Feature("top_system_prompt_share", CONTENT, lambda s: s.system_prompts.top_share),
        *_signal_features(signal_names),
        # free request parameters
        set_share("temperature_set_share", REQUEST_PARAMS, "temperature"),
        Feature("temperature_mean", REQUEST_PARAMS, lambda s: s.temperature.mean),
        Feature("temperature_std", REQUEST_PARAMS, lambda s: s.temperature.std),
        share_of("temperature_zero_share", REQUEST_PARAMS, col("temperature") == 0.0),
        share_of("top_p_set_share", REQUEST_PARAMS, col("top_p").is_set()),
        Feature("n_mean", REQUEST_PARAMS, lambda s: s.n_choices.mean),
        share_of("n_multi_share", REQUEST_PARAMS, col("n") > 1),
        set_share("max_tokens_set_share", REQUEST_PARAMS, "max_tokens"),
        Feature("max_tokens_mean", REQUEST_PARAMS, lambda s: s.max_tokens.mean),
        Feature("param_profile_top_share", REQUEST_PARAMS, lambda s: s.params.top_share),
        share_of("logprobs_share", REQUEST_PARAMS, true(col("logprobs"))),
        Feature(
            "top_logprobs_mean",
            REQUEST_PARAMS,
            lambda s: s.top_logprobs_mean.mean,
            Measure(
                "top_logprobs_mean", MeanVar(), reads=col("top_logprobs"), where=col("top_logprobs").is_set()
            ),
        ),
        set_share("logit_bias_share", REQUEST_PARAMS, "logit_bias"),
        Feature("logit_bias_size_mean", REQUEST_PARAMS, lambda s: s.logit_bias.mean),
        share_of("stream_share", REQUEST_PARAMS, true(col("stream"))),
        # conversation and lengths
        share_of("single_turn_share", CONTENT, col("n_user_turns") <= 1),
        Feature(
            "user_turns_mean",
            CONTENT,
            lambda s: s.user_turns_mean.mean,
            Measure("user_turns_mean", MeanVar(), reads=col("n_user_turns")),
        ),
        Feature("prompt_chars_mean", CONTENT, lambda s: s.prompt_chars.mean),
        Feature("response_chars_mean", CONTENT, lambda s: s.response_chars.mean),
        Feature(
            "output_input_ratio",
            CONTENT,
            lambda s: when(
                s.response_chars.n > 0, (s.response_chars.total + 1.0) / (s.answered_prompt_chars.total + 1.0)
            ),
        ),
        set_share("answered_share", BEHAVIOUR, "response_chars"),
        # a reasoning trace comes back when the caller picks a reasoning model
        share_of("reasoning_returned_share", REQUEST_PARAMS, _nonempty("reasoning_text")),
        share_of("error_share", BEHAVIOUR, col("status") >= 400),
        # client and account
        set_share("end_user_share", METADATA, "end_users"),
        Feature("distinct_end_users", METADATA, lambda s: s.end_user_count.estimate),
        Feature("top_end_user_share", METADATA, lambda s: s.end_users.top_share),
        Feature("distinct_ips", METADATA, lambda s: s.ip_count.estimate),
        Feature("top_ip_share", METADATA, lambda s: s.ips.top_share),
        Feature(
            "distinct_asns",
            METADATA,
            lambda s: s.asn_count.estimate,
            Measure(
                "asn_count",
                Distinct(K_SMALL),
                reads=hashed_int(col("client_asn")),
                where=col("client_asn").is_set(),
            ),
        ),
        Feature(
            "distinct_user_agents",
            METADATA,
            lambda s: s.user_agent_count.estimate,
            Measure(
                "user_agent_count",
                Distinct(K_SMALL),
                reads=hashed_text(col("client_user_agent")),
                where=_nonempty("client_user_agent"),
            ),
        ),
        Feature(
            "distinct_tls_fingerprints",
            METADATA,
            lambda s: s.tls_count.estimate,
            Measure(
                "tls_count",
                Distinct(K_SMALL),
                reads=hashed_text(col("client_tls_fingerprint")),
                where=_nonempty("client_tls_fingerprint"),
            ),
        ),
        share_of("router_share", METADATA, col("client_router").is_set()),
    )


class Stats(dict[str, "StatRow"]):
    """Statistics by measure name, read as ``s.gaps.cv`` or ``s["signal.logit_probe"].mean``."""

    def __getattr__(self, measure: str) -> StatRow:
        try:
            return self[measure]
        except KeyError:
            raise AttributeError(f"no measure {measure!r}") from None


class StatRow(dict[str, Any]):
    """One measure's statistics by name (``read()`` of its reducer, or arrays of them)."""

    def __getattr__(self, stat: str) -> Any:
        try:
            return self[stat]
        except KeyError:
            raise AttributeError(f"no statistic {stat!r} (has {', '.join(self)})") from None


@dataclass(frozen=True)
class Plan:
    """The measures and features for one set of account signals, with the streaming path's
    per-call functions compiled once."""

    signal_names: tuple[str, ...]
    measures: tuple[Measure, ...]
    features: tuple[Feature, ...]
    row_functions: tuple[tuple[Callable[[Any], bool] | None, Callable[[Any], Any] | None], ...]

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features)

    def finish(self, stats: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
        """Every feature from the measures' statistics (floats, or arrays of checkpoints)."""
        s = Stats((name, StatRow(row)) for name, row in stats.items())
        return {feature.name: feature.finish(s) for feature in self.features}


def _compile(measure: Measure) -> Callable[[Any], Any] | None:
    expr = measure.reads
    if expr is None:
        return None
    if isinstance(expr, tuple):
        parts = [e.compile_row() for e in expr]
        if isinstance(measure.reducer, FirstValues):
            # (key, value): the value (a parse of the prompt) is worked out only for a new key
            key_of, value_of = parts
            return lambda row: (key_of(row), lambda: value_of(row))
        return lambda row: tuple(part(row) for part in parts)
    return expr.compile_row()


@functools.cache
def plan_for(signal_names: tuple[str, ...]) -> Plan:
    features = feature_declarations(signal_names)
    measures = (
        *MEASURES,
        *signal_measures(signal_names),
        *(f.measure for f in features if f.measure is not None),
    )
    names = [m.name for m in measures]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"measures declared twice: {duplicates}")
    feature_names = [f.name for f in features]
    if len(set(feature_names)) != len(feature_names):
        raise ValueError("a feature is declared twice")
    functions = tuple((None if m.where is None else m.where.compile_row(), _compile(m)) for m in measures)
    return Plan(tuple(signal_names), measures, features, functions)


def feature_names(signal_names: Iterable[str] = SIGNAL_NAMES) -> list[str]:
    """The names of the feature vector, in order, for a model's column list."""
    return list(plan_for(tuple(signal_names)).feature_names)


FEATURES: tuple[str, ...] = tuple(feature_names(ACCOUNT_SIGNALS))


def feature_vector(features: Mapping[str, float]) -> np.ndarray:
    """The features in FEATURES order, as float32 (checkpoints are kept as compact vectors)."""
    return np.fromiter((features[name] for name in FEATURES), dtype=np.float32, count=len(FEATURES))


def call_columns(signal_names: Sequence[str] = ACCOUNT_SIGNALS) -> set[str]:
    """Every column the features read: call-store columns plus the derived ones."""
    return set().union(*(m.columns() for m in plan_for(tuple(signal_names)).measures))


# what the derived columns hold, for the bulk path's schema
DERIVED_TYPES: dict[str, pa.DataType] = {FINGERPRINT: pa.string()}
