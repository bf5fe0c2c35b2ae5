"""Where each account feature comes from, so a model can be trained without what an adversary fakes.

Every feature of `AccountWindow.features()` carries exactly one provenance, declared with the
feature in `distillguard.features.catalog`:

- ``content``: what the account asks and what comes back (signal rates, templates, prompt and
  answer lengths, topic spread): what distillation is, and what a careful distiller cannot hide;
- ``behaviour``: volume, timing, diversity and reuse of the asks over time;
- ``metadata``: the client and the account (IPs, networks, user agents, TLS, routers, end users):
  corroboration that a careful adversary copies from ordinary users;
- ``request_params``: free sampling and output parameters (temperature, n, logprobs, logit_bias,
  which model): set at no cost, and their benign distribution is a guess of the simulator's.

`bench detect` compares the full model with one trained on content and behaviour alone; a test
checks that every feature the build computes has a provenance, so a new one cannot slip in
untagged (a declaration without one does not construct).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from typing import Final

CONTENT: Final = "content"
BEHAVIOUR: Final = "behaviour"
METADATA: Final = "metadata"
REQUEST_PARAMS: Final = "request_params"
PROVENANCES: Final = (CONTENT, BEHAVIOUR, METADATA, REQUEST_PARAMS)
# what a careful adversary controls at no cost: left out of the content+behaviour model
FAKEABLE: Final = (METADATA, REQUEST_PARAMS)

# per-signal features: the signal reads the request's text, except logit_probe, which reads only
# its parameters (logprobs, logit_bias, max_tokens, n)
_PARAMETER_SIGNALS: Final = frozenset({"logit_probe"})
_SIGNAL_SUFFIXES: Final = ("_fire_rate", "_mean")


def signal_provenance(signal: str) -> str:
    """The provenance of a per-signal feature (``cot_extraction.reveal_hidden`` is cot_extraction's)."""
    return REQUEST_PARAMS if signal.split(".", 1)[0] in _PARAMETER_SIGNALS else CONTENT


class UnknownFeature(KeyError):
    """A feature without a declared provenance: declare it in `distillguard.features.catalog`."""


def provenance_of(name: str) -> str:
    """The provenance of one feature.

    >>> provenance_of("top_ip_share"), provenance_of("grading_request_fire_rate")
    ('metadata', 'content')
    >>> provenance_of("logit_probe_mean"), provenance_of("cot_extraction.reveal_hidden_fire_rate")
    ('request_params', 'content')
    """
    fixed = _declared().get(name)
    if fixed is not None:
        return fixed
    for suffix in _SIGNAL_SUFFIXES:
        if name.endswith(suffix):
            return signal_provenance(name[: -len(suffix)])
    raise UnknownFeature(f"feature {name!r} has no provenance; declare it in distillguard.features.catalog")


@functools.cache
def _declared() -> dict[str, str]:
    # the features that do not depend on the signal set, each with the provenance it was declared with
    from distillguard.features.catalog import feature_declarations  # the catalog imports this module

    return {f.name: f.provenance for f in feature_declarations(())}


def without(names: Iterable[str], provenances: Sequence[str]) -> tuple[str, ...]:
    """The features of ``names`` whose provenance is not in ``provenances``, in order.

    >>> without(["n_calls", "top_ip_share", "temperature_mean"], FAKEABLE)
    ('n_calls',)
    """
    unknown = [p for p in provenances if p not in PROVENANCES]
    if unknown:
        raise ValueError(f"unknown provenance {unknown}; choose from {PROVENANCES}")
    return tuple(name for name in names if provenance_of(name) not in provenances)
