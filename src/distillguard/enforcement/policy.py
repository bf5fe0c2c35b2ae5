"""The enforcement policy as data: which signal scores lead to which action, per-tier parameter
limits, reasoning protection and throttling, loaded from YAML and validated on load.

Detectors never enforce (STYLE.md, habit 4): signals score a call, this table decides. Errors name
the file and the field (`policy.yaml: rules[2].min_score: ...`), never a bare traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import msgspec
import yaml

from distillguard.enforcement.parameters import KNOWN_INCLUDES

# Ordered by severity: when several rules match, the most severe action wins.
ACTIONS: tuple[str, ...] = ("allow", "flag", "throttle", "block", "ban")
SEVERITY: dict[str, int] = {action: i for i, action in enumerate(ACTIONS)}

Action = Literal["allow", "flag", "throttle", "block", "ban"]


class PolicyError(ValueError):
    """A policy file that does not validate; the message names the file and the field."""


class Rule(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """When `signal` (or one of its `part`s) scores at least `min_score`, take `action`."""

    name: str
    signal: str
    action: Action
    min_score: float
    part: str | None = None
    message: str | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_score <= 1.0:
            raise ValueError(f"min_score {self.min_score} outside [0, 1]")


class Bucket(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A token bucket: `burst` calls at once, refilled at `rate_per_s` calls per second."""

    rate_per_s: float
    burst: float

    def __post_init__(self) -> None:
        if self.rate_per_s <= 0 or self.burst < 1:
            raise ValueError("rate_per_s must be > 0 and burst >= 1")


class Throttle(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The bucket that calls matched by a `throttle` rule draw from, per account or per actor."""

    bucket: Bucket = msgspec.field(default_factory=lambda: Bucket(rate_per_s=0.2, burst=5))
    by: Literal["account", "actor"] = "actor"


# /v1/responses `include` entries a tier may ask for unless its `include` says otherwise: none of
# them reveals the model's distribution or its reasoning (the log-probabilities entry is governed
# by `logprobs`; encrypted reasoning is removed from answers whenever reasoning is not kept).
DEFAULT_INCLUDES = (
    "reasoning.encrypted_content",
    "file_search_call.results",
    "web_search_call.results",
    "web_search_call.action.sources",
    "code_interpreter_call.outputs",
    "computer_call_output.output.image_url",
    "message.input_image.image_url",
)


class Tier(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """What an account tier may ask for of the parameters that reveal the model's output
    distribution or sample it wholesale (OWASP LLM10: a student model learns best from
    log-probabilities), and an optional rate limit for every call of the tier. The table of which
    request parameter draws on which limit is `enforcement.parameters.TIER_LIMITS`."""

    logprobs: bool = False  # chat `logprobs`, completions `logprobs` (even 0), `top_logprobs`, include
    max_top_logprobs: int = 0  # chat/responses `top_logprobs`, completions `logprobs`
    logit_bias: bool = False
    max_n: int = 1
    max_best_of: int = 1
    echo: bool = False  # completions `echo`: with logprobs, the prompt's log-probabilities
    prompt_logprobs: bool = False  # vLLM `prompt_logprobs`
    allowed_token_ids: bool = False  # vLLM `allowed_token_ids`
    include: list[str] = msgspec.field(default_factory=lambda: list(DEFAULT_INCLUDES))
    rate_limit: Bucket | None = None

    def __post_init__(self) -> None:
        for name in ("max_top_logprobs", "max_n", "max_best_of"):
            least = 0 if name == "max_top_logprobs" else 1
            if getattr(self, name) < least:
                raise ValueError(f"{name} must be >= {least}")
        for i, entry in enumerate(self.include):
            if entry not in KNOWN_INCLUDES:
                raise ValueError(
                    f"include[{i}]: unknown include entry {entry!r}; known: {', '.join(sorted(KNOWN_INCLUDES))}"
                )


class Requests(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """What a request body may be: parameters the gateway does not know are refused (400) unless
    `unknown_parameters` is `pass` or they are named in `pass_parameters` (vendor extensions);
    bodies nested deeper than `max_depth` or holding more than `max_values` values are refused."""

    unknown_parameters: Literal["refuse", "pass"] = "refuse"
    pass_parameters: list[str] = []
    max_depth: int = 64
    max_values: int = 200_000

    def __post_init__(self) -> None:
        if not 2 <= self.max_depth <= 512:
            raise ValueError(f"max_depth must be between 2 and 512, not {self.max_depth}")
        if self.max_values < 10:
            raise ValueError(f"max_values must be >= 10, not {self.max_values}")


class Reasoning(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """What leaves the gateway of the model's reasoning: `keep`, `strip` (remove it) or `summary`
    (keep a short extract: the first and last sentence, at most `summary_chars` characters)."""

    action: Literal["keep", "strip", "summary"] = "strip"
    summary_chars: int = 240
    # Sanctioned distillation accounts bought the reasoning: by default they keep it.
    keep_for_allowed: bool = True


class Accounts(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Account verdicts in the gateway: the scan's per-account windows and risk scoring, run off the
    request path; a verdict of `distiller` or `suspicious` leads to the action named here."""

    enabled: bool = True
    on_distiller: Literal["flag", "throttle", "ban"] = "ban"
    on_suspicious: Literal["flag", "throttle"] = "flag"
    embeddings: bool = True  # a bounded sample of prompts per account, for prompt diversity
    queue_max: int = 100_000
    # windows kept per worker: the least recently active are evicted past max_accounts, and any
    # idle longer than idle_evict_s (their verdicts already acted on; bans live in the ban list)
    max_accounts: int = 200_000
    idle_evict_s: float = 3 * 86_400.0

    def __post_init__(self) -> None:
        if self.queue_max < 1:
            raise ValueError("queue_max must be >= 1")
        if self.max_accounts < 1:
            raise ValueError("max_accounts must be >= 1")
        if self.idle_evict_s <= 0:
            raise ValueError("idle_evict_s must be > 0")


class Recidivism(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A new account whose indicator matches a decided actor's enforcement entry is held to that
    actor's decision, pending review: `block` refuses its calls (403 `account_held`), `throttle`
    puts it in the actor's bucket. Per indicator kind, since a payment fingerprint is near-proof
    and a prompt template is not (evaluation customers share public ones); a kind left out is not
    matched at all."""

    kinds: dict[
        Literal["payment", "signup_ip", "tls_asn", "template", "system_prompt"], Literal["block", "throttle"]
    ] = msgspec.field(
        default_factory=lambda: {
            "payment": "block",
            "signup_ip": "block",
            "tls_asn": "throttle",
            "template": "throttle",
        }
    )


class Policy(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    version: int = 1
    # shadow: every decision is computed and logged, none is enforced (measure false positives first)
    mode: Literal["enforce", "shadow"] = "enforce"
    # When the shared state (Redis) cannot be reached: open = serve and log, closed = refuse (503).
    fail_mode: Literal["open", "closed"] = "open"
    # Accounts enrolled in a sanctioned distillation programme: rules never act on them.
    allow_accounts: list[str] = []
    default_tier: str = "free"
    tiers: dict[str, Tier] = msgspec.field(
        default_factory=lambda: {
            "free": Tier(),
            "enterprise": Tier(logprobs=True, max_top_logprobs=20, logit_bias=True, max_n=8),
        }
    )
    requests: Requests = msgspec.field(default_factory=Requests)
    rules: list[Rule] = []
    throttle: Throttle = msgspec.field(default_factory=Throttle)
    reasoning: Reasoning = msgspec.field(default_factory=Reasoning)
    accounts: Accounts = msgspec.field(default_factory=Accounts)
    recidivism: Recidivism = msgspec.field(default_factory=Recidivism)

    def tier(self, name: str | None) -> Tier:
        found = self.tiers.get(name or self.default_tier)
        return found if found is not None else self.tiers[self.default_tier]


def _validate_across(policy: Policy, source: str, known_signals: set[str] | None) -> None:
    """Checks that need the whole policy (pySigma's second phase)."""
    if policy.default_tier not in policy.tiers:
        raise PolicyError(f"{source}: default_tier: {policy.default_tier!r} is not one of tiers")
    seen: set[str] = set()
    for i, rule in enumerate(policy.rules):
        if rule.name in seen:
            raise PolicyError(f"{source}: rules[{i}].name: duplicate rule name {rule.name!r}")
        seen.add(rule.name)
        if known_signals is not None and rule.signal not in known_signals:
            raise PolicyError(
                f"{source}: rules[{i}].signal: unknown signal {rule.signal!r}; "
                f"known: {', '.join(sorted(known_signals))}"
            )


def _field_error(source: str, error: msgspec.ValidationError, prefix: str = "") -> PolicyError:
    """msgspec says `Expected int, got str - at $.rules[2].min_score`; say `file: rules[2].min_score: ...`."""
    text = str(error)
    message, _, where = text.rpartition(" - at `")
    if not message:
        return PolicyError(f"{source}: {prefix.rstrip('.') + ': ' if prefix else ''}{text}")
    path = prefix + where.rstrip("`").removeprefix("$").lstrip(".")
    return PolicyError(f"{source}: {path.rstrip('.')}: {message}")


def policy_from_dict(data: Any, source: str = "<policy>", known_signals: set[str] | None = None) -> Policy:
    if data is None:
        data = {}
    tiers = data.get("tiers") if isinstance(data, dict) else None
    if isinstance(tiers, dict):  # one by one, so an error names the tier (msgspec says `tiers[...]`)
        for name, tier in tiers.items():
            try:
                msgspec.convert(tier, Tier)
            except msgspec.ValidationError as error:
                raise _field_error(source, error, f"tiers.{name}.") from None
    try:
        policy = msgspec.convert(data, Policy)
    except msgspec.ValidationError as error:
        raise _field_error(source, error) from None
    _validate_across(policy, source, known_signals)
    return policy


def load_policy(path: str | Path, known_signals: set[str] | None = None) -> Policy:
    """The policy in a YAML file, validated; `PolicyError` names the file and the field."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise PolicyError(f"{path}: not valid YAML: {error}") from None
    return policy_from_dict(data, str(path), known_signals)


def default_policy() -> Policy:
    """The policy shipped with the package (`enforcement/default_policy.yaml`)."""
    return load_policy(Path(__file__).with_name("default_policy.yaml"))
