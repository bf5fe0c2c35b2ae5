"""Where each account feature comes from, so a model can be trained without what an adversary fakes.

Every feature of `AccountWindow.features()` carries exactly one provenance:

- ``content``: what the account asks and what comes back (signal rates, templates, prompt and
  answer lengths, topic spread): what distillation is, and what a careful distiller cannot hide;
- ``behaviour``: volume, timing, diversity and reuse of the asks over time;
- ``metadata``: the client and the account (IPs, networks, user agents, TLS, routers, end users):
  corroboration that a careful adversary copies from ordinary users;
- ``request_params``: free sampling and output parameters (temperature, n, logprobs, logit_bias,
  which model): set at no cost, and their benign distribution is a guess of the simulator's.

`bench detect` compares the full model with one trained on content and behaviour alone; a test
checks that every feature the build computes has a provenance, so a new one cannot slip in
untagged.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Final

CONTENT: Final = "content"
BEHAVIOUR: Final = "behaviour"
METADATA: Final = "metadata"
REQUEST_PARAMS: Final = "request_params"
PROVENANCES: Final = (CONTENT, BEHAVIOUR, METADATA, REQUEST_PARAMS)
# what a careful adversary controls at no cost: left out of the content+behaviour model
FAKEABLE: Final = (METADATA, REQUEST_PARAMS)

_FIXED: Final[dict[str, str]] = {
    # volume and timing
    "n_calls": BEHAVIOUR,
    "active_hours": BEHAVIOUR,
    "active_days": BEHAVIOUR,
    "calls_per_active_hour": BEHAVIOUR,
    "span_hours": BEHAVIOUR,
    "hour_of_day_entropy": BEHAVIOUR,
    "gap_median_s": BEHAVIOUR,
    "gap_cv": BEHAVIOUR,
    "gap_regular_share": BEHAVIOUR,
    "gap_burstiness": BEHAVIOUR,
    "error_share": BEHAVIOUR,
    # diversity and reuse of what is asked
    "distinct_prompts": BEHAVIOUR,
    "distinct_prompt_ratio": BEHAVIOUR,
    "distinct_templates": BEHAVIOUR,
    "distinct_template_ratio": BEHAVIOUR,
    "top_template_share": BEHAVIOUR,
    "template_refill_share": BEHAVIOUR,
    "embedded_calls": BEHAVIOUR,
    "embedding_dispersion": CONTENT,
    "topic_buckets": CONTENT,
    "topic_coverage": CONTENT,
    "topic_novelty": CONTENT,
    "system_prompt_share": CONTENT,
    "distinct_system_prompts": CONTENT,
    "top_system_prompt_share": CONTENT,
    "any_signal_fire_rate": CONTENT,
    "single_turn_share": CONTENT,
    "user_turns_mean": CONTENT,
    "prompt_chars_mean": CONTENT,
    "prompt_chars_cv": CONTENT,
    "response_chars_mean": CONTENT,
    "output_input_ratio": CONTENT,
    "answered_share": BEHAVIOUR,
    # free request parameters
    "temperature_set_share": REQUEST_PARAMS,
    "temperature_mean": REQUEST_PARAMS,
    "temperature_std": REQUEST_PARAMS,
    "temperature_zero_share": REQUEST_PARAMS,
    "top_p_set_share": REQUEST_PARAMS,
    "n_mean": REQUEST_PARAMS,
    "n_multi_share": REQUEST_PARAMS,
    "max_tokens_set_share": REQUEST_PARAMS,
    "max_tokens_mean": REQUEST_PARAMS,
    "param_profile_top_share": REQUEST_PARAMS,
    "logprobs_share": REQUEST_PARAMS,
    "top_logprobs_mean": REQUEST_PARAMS,
    "logit_bias_share": REQUEST_PARAMS,
    "logit_bias_size_mean": REQUEST_PARAMS,
    "stream_share": REQUEST_PARAMS,
    # a reasoning trace comes back when the caller picks a reasoning model
    "reasoning_returned_share": REQUEST_PARAMS,
    # client and account
    "end_user_share": METADATA,
    "distinct_end_users": METADATA,
    "top_end_user_share": METADATA,
    "distinct_ips": METADATA,
    "top_ip_share": METADATA,
    "distinct_asns": METADATA,
    "distinct_user_agents": METADATA,
    "distinct_tls_fingerprints": METADATA,
    "router_share": METADATA,
}
# per-signal features: the signal reads the request's text, except logit_probe, which reads only
# its parameters (logprobs, logit_bias, max_tokens, n)
_PARAMETER_SIGNALS: Final = frozenset({"logit_probe"})
_SIGNAL_SUFFIXES: Final = ("_fire_rate", "_mean")


class UnknownFeature(KeyError):
    """A feature without a declared provenance: declare it in `distillguard.features.provenance`."""


def provenance_of(name: str) -> str:
    """The provenance of one feature.

    >>> provenance_of("top_ip_share"), provenance_of("grading_request_fire_rate")
    ('metadata', 'content')
    >>> provenance_of("logit_probe_mean"), provenance_of("cot_extraction.reveal_hidden_fire_rate")
    ('request_params', 'content')
    """
    fixed = _FIXED.get(name)
    if fixed is not None:
        return fixed
    for suffix in _SIGNAL_SUFFIXES:
        if name.endswith(suffix):
            signal = name[: -len(suffix)].split(".", 1)[0]
            return REQUEST_PARAMS if signal in _PARAMETER_SIGNALS else CONTENT
    raise UnknownFeature(f"feature {name!r} has no provenance; declare it in {__name__}")


def without(names: Iterable[str], provenances: Sequence[str]) -> tuple[str, ...]:
    """The features of ``names`` whose provenance is not in ``provenances``, in order.

    >>> without(["n_calls", "top_ip_share", "temperature_mean"], FAKEABLE)
    ('n_calls',)
    """
    unknown = [p for p in provenances if p not in PROVENANCES]
    if unknown:
        raise ValueError(f"unknown provenance {unknown}; choose from {PROVENANCES}")
    return tuple(name for name in names if provenance_of(name) not in provenances)
