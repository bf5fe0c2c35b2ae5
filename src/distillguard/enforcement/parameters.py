"""The request parameters the gateway knows, as one table: each one's type and the endpoints that
take it; and, for the parameters that reveal the model's output distribution or let a caller
sample it wholesale (OWASP LLM10), what the call asks for, checked against the caller's tier.

A string where a number belongs, a list where an object belongs, or a parameter the table does not
know (unless the policy lets unknown ones pass) is a 400 naming the parameter, before any limit is
checked: what the gateway checks is exactly what the upstream receives.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from distillguard.enforcement.policy import Requests, Tier

CHAT = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"
RESPONSES = "/v1/responses"
EMBEDDINGS = "/v1/embeddings"
GENERATE = (CHAT, COMPLETIONS, RESPONSES)
SAMPLED = (CHAT, COMPLETIONS)  # the OpenAI sampling parameters, and vLLM's extensions to them


class RequestError(ValueError):
    """A request that does not follow the API: 400 in OpenAI's error format, naming `param`."""

    def __init__(self, param: str | None, message: str, code: str = "invalid_type") -> None:
        super().__init__(message)
        self.param, self.message, self.code = param, message, code


# ---- types: a check returns None when the value fits, else what was expected ----------------------
Check = Callable[[Any], str | None]


def _typename(value: Any) -> str:
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "an array",
        dict: "an object",
    }.get(type(value), "null" if value is None else type(value).__name__)


def _boolean(value: Any) -> str | None:
    return None if isinstance(value, bool) else "a boolean"


def _integer(value: Any) -> str | None:
    return None if type(value) is int else "an integer"


def _number(value: Any) -> str | None:
    if type(value) is int or (type(value) is float and math.isfinite(value)):
        return None
    return "a number"


def _string(value: Any) -> str | None:
    return None if isinstance(value, str) else "a string"


def _object(value: Any) -> str | None:
    return None if isinstance(value, dict) else "an object"


def _array(value: Any) -> str | None:
    return None if isinstance(value, list) else "an array"


def _string_or_object(value: Any) -> str | None:
    return None if isinstance(value, str | dict) else "a string or an object"


def _string_or_array(value: Any) -> str | None:
    return None if isinstance(value, str | list) else "a string or an array"


def _strings(value: Any) -> str | None:
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return None
    return "an array of strings"


def _integers(value: Any) -> str | None:
    if isinstance(value, list) and all(type(item) is int for item in value):
        return None
    return "an array of integers"


def _stop(value: Any) -> str | None:
    return None if isinstance(value, str) or _strings(value) is None else "a string or an array of strings"


def _token_bias(value: Any) -> str | None:
    """logit_bias: an object mapping token ids to numbers (never a list: that is how a caller
    smuggled it past a check that only counted an object's keys)."""
    if isinstance(value, dict) and all(_number(bias) is None for bias in value.values()):
        return None
    return "an object mapping token ids to numbers"


def _prompt(value: Any) -> str | None:
    """completions `prompt` and embeddings `input`: text, texts, tokens, or lists of tokens."""
    if isinstance(value, str) or _strings(value) is None or _integers(value) is None:
        return None
    if isinstance(value, list) and all(_integers(item) is None for item in value):
        return None
    return "a string, an array of strings, or an array of token ids"


def _anything(value: Any) -> str | None:
    return None


# The same types in JSON Schema, for the gateway's OpenAPI document (and the fuzz tests built on it).
_NUMBERS = {"type": "array", "items": {"type": "integer"}}
JSON_SCHEMA: dict[Check, dict[str, Any]] = {
    _boolean: {"type": "boolean"},
    _integer: {"type": "integer"},
    _number: {"type": "number"},
    _string: {"type": "string"},
    _object: {"type": "object"},
    _array: {"type": "array"},
    _string_or_object: {"type": ["string", "object"]},
    _string_or_array: {"type": ["string", "array"]},
    _strings: {"type": "array", "items": {"type": "string"}},
    _integers: _NUMBERS,
    _stop: {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
    _token_bias: {"type": "object", "additionalProperties": {"type": "number"}},
    _prompt: {
        "anyOf": [
            {"type": "string"},
            {"type": "array", "items": {"type": "string"}},
            _NUMBERS,
            {"type": "array", "items": _NUMBERS},
        ]
    },
    _anything: {},
}


class Parameter(NamedTuple):
    name: str
    check: Check
    endpoints: tuple[str, ...]
    required: bool = False


# Every parameter the gateway forwards without `requests.unknown_parameters: pass`. Extraction-
# relevant ones are also read by `asks` below; the rest are typed so that what the signals and
# the log see is what the upstream gets.
PARAMETERS: tuple[Parameter, ...] = (
    Parameter("model", _string, (*GENERATE, EMBEDDINGS), required=True),
    Parameter("messages", _array, (CHAT,), required=True),
    Parameter("prompt", _prompt, (COMPLETIONS,), required=True),
    Parameter("prompt", _object, (RESPONSES,)),  # a stored prompt template reference
    Parameter("input", _string_or_array, (RESPONSES,)),
    Parameter("input", _prompt, (EMBEDDINGS,), required=True),
    Parameter("instructions", _string, (RESPONSES,)),
    Parameter("stream", _boolean, GENERATE),
    Parameter("stream_options", _object, GENERATE),
    Parameter("temperature", _number, GENERATE),
    Parameter("top_p", _number, GENERATE),
    Parameter("n", _integer, SAMPLED),
    Parameter("best_of", _integer, SAMPLED),
    Parameter("echo", _boolean, SAMPLED),
    Parameter("suffix", _string, (COMPLETIONS,)),
    Parameter("stop", _stop, SAMPLED),
    Parameter("max_tokens", _integer, SAMPLED),
    Parameter("max_completion_tokens", _integer, (CHAT,)),
    Parameter("max_output_tokens", _integer, (RESPONSES,)),
    Parameter("presence_penalty", _number, SAMPLED),
    Parameter("frequency_penalty", _number, SAMPLED),
    Parameter("logit_bias", _token_bias, SAMPLED),
    Parameter("logprobs", _boolean, (CHAT,)),
    Parameter("logprobs", _integer, (COMPLETIONS,)),  # a count of alternatives per token
    Parameter("top_logprobs", _integer, (CHAT, RESPONSES)),
    Parameter("include", _strings, (RESPONSES,)),
    Parameter("seed", _integer, SAMPLED),
    Parameter("user", _string, (*GENERATE, EMBEDDINGS)),
    Parameter("safety_identifier", _string, (CHAT, RESPONSES)),
    Parameter("prompt_cache_key", _string, (CHAT, RESPONSES)),
    Parameter("metadata", _object, (CHAT, RESPONSES)),
    Parameter("store", _boolean, (CHAT, RESPONSES)),
    Parameter("service_tier", _string, (CHAT, RESPONSES)),
    Parameter("tools", _array, (CHAT, RESPONSES)),
    Parameter("tool_choice", _string_or_object, (CHAT, RESPONSES)),
    Parameter("parallel_tool_calls", _boolean, (CHAT, RESPONSES)),
    Parameter("functions", _array, (CHAT,)),
    Parameter("function_call", _string_or_object, (CHAT,)),
    Parameter("response_format", _object, (CHAT,)),
    Parameter("reasoning_effort", _string, (CHAT,)),
    Parameter("reasoning", _object, (RESPONSES,)),
    Parameter("verbosity", _string, (CHAT,)),
    Parameter("text", _object, (RESPONSES,)),
    Parameter("modalities", _strings, (CHAT,)),
    Parameter("audio", _object, (CHAT,)),
    Parameter("prediction", _object, (CHAT,)),
    Parameter("web_search_options", _object, (CHAT,)),
    Parameter("truncation", _string, (RESPONSES,)),
    Parameter("previous_response_id", _string, (RESPONSES,)),
    Parameter("conversation", _string_or_object, (RESPONSES,)),
    Parameter("background", _boolean, (RESPONSES,)),
    Parameter("max_tool_calls", _integer, (RESPONSES,)),
    Parameter("encoding_format", _string, (EMBEDDINGS,)),
    Parameter("dimensions", _integer, (EMBEDDINGS,)),
    # vLLM's OpenAI-compatible server: sampling extensions (typed), and the ones that reveal the
    # distribution (`prompt_logprobs`: log-probabilities of the prompt's tokens, `-1` the whole
    # vocabulary; `allowed_token_ids`: sample only among chosen tokens, a probe of their ranking)
    Parameter("prompt_logprobs", _integer, SAMPLED),
    Parameter("allowed_token_ids", _integers, SAMPLED),
    Parameter("top_k", _integer, SAMPLED),
    Parameter("min_p", _number, SAMPLED),
    Parameter("repetition_penalty", _number, SAMPLED),
    Parameter("length_penalty", _number, SAMPLED),
    Parameter("min_tokens", _integer, SAMPLED),
    Parameter("ignore_eos", _boolean, SAMPLED),
    Parameter("stop_token_ids", _integers, SAMPLED),
    Parameter("bad_words", _strings, SAMPLED),
    Parameter("skip_special_tokens", _boolean, SAMPLED),
    Parameter("spaces_between_special_tokens", _boolean, SAMPLED),
    Parameter("include_stop_str_in_output", _boolean, SAMPLED),
    Parameter("return_tokens_as_token_ids", _boolean, SAMPLED),
    Parameter("use_beam_search", _boolean, SAMPLED),
    Parameter("guided_json", _anything, SAMPLED),
    Parameter("guided_regex", _string, SAMPLED),
    Parameter("guided_choice", _strings, SAMPLED),
    Parameter("guided_grammar", _string, SAMPLED),
    Parameter("structured_outputs", _object, SAMPLED),
    Parameter("chat_template", _string, (CHAT,)),
    Parameter("chat_template_kwargs", _object, (CHAT,)),
    Parameter("add_generation_prompt", _boolean, (CHAT,)),
    Parameter("continue_final_message", _boolean, (CHAT,)),
)

# Values of /v1/responses `include`. `message.output_text.logprobs` draws on the tier's
# `logprobs`; `reasoning.encrypted_content` is removed from answers when reasoning is stripped.
KNOWN_INCLUDES = frozenset(
    {
        "message.output_text.logprobs",
        "reasoning.encrypted_content",
        "file_search_call.results",
        "web_search_call.results",
        "web_search_call.action.sources",
        "code_interpreter_call.outputs",
        "computer_call_output.output.image_url",
        "message.input_image.image_url",
    }
)
LOGPROBS_INCLUDE = "message.output_text.logprobs"

_TABLE: dict[str, dict[str, Parameter]] = {}
for _parameter in PARAMETERS:
    for _endpoint in _parameter.endpoints:
        _TABLE.setdefault(_endpoint, {})[_parameter.name] = _parameter
_REQUIRED = {
    endpoint: tuple(p.name for p in table.values() if p.required) for endpoint, table in _TABLE.items()
}


def known_parameters(endpoint: str) -> dict[str, Parameter]:
    return _TABLE.get(endpoint, {})


# ---- what a call asks for, and the tier's limit on it -------------------------------------------
class Ask(NamedTuple):
    """One thing a call asks for that a tier limits: `limit` names the tier's limit, `param` the
    request parameter that asked (named in a refusal), `amount` how much (a count, or an entry)."""

    limit: str
    param: str
    amount: int | str = 1


class CheckedRequest(NamedTuple):
    asks: tuple[Ask, ...]
    unknown: tuple[str, ...]  # parameters the table does not know, passed because the policy says so


def check_request(request: dict[str, Any], endpoint: str, rules: Requests) -> CheckedRequest:
    """Types of every known parameter, presence of the required ones, unknown parameters per
    `rules`; returns what the call asks for. Raises RequestError naming the parameter."""
    table = _TABLE.get(endpoint)
    if table is None:
        return CheckedRequest((), ())
    unknown: list[str] = []
    for name, value in request.items():
        parameter = table.get(name)
        if parameter is None:
            if rules.unknown_parameters == "refuse" and name not in rules.pass_parameters:
                raise RequestError(
                    name, f"Unrecognized request argument supplied: {name}", code="unknown_parameter"
                )
            unknown.append(name)
            continue
        if value is None and not parameter.required:
            continue  # the API treats null as "not given"
        expected = parameter.check(value)
        if expected is not None:
            raise RequestError(
                name,
                f"Invalid type for '{name}': expected {expected}, but got {_typename(value)} instead.",
            )
    for name in _REQUIRED.get(endpoint, ()):
        if request.get(name) is None:
            raise RequestError(
                name, f"Missing required parameter: '{name}'.", code="missing_required_parameter"
            )
    if endpoint == CHAT:
        _check_messages(request["messages"])
    elif endpoint == RESPONSES and isinstance(request.get("input"), list):
        _check_items(request["input"], "input")
    return CheckedRequest(asks(request, endpoint), tuple(unknown))


def _check_messages(messages: list[Any]) -> None:
    if not messages:
        raise RequestError("messages", "Invalid 'messages': empty array.", code="empty_array")
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise RequestError(
                f"messages[{i}]",
                f"Invalid type for 'messages[{i}]': expected an object, but got {_typename(message)} instead.",
            )
        if not isinstance(message.get("role"), str):
            raise RequestError(f"messages[{i}].role", f"Invalid 'messages[{i}].role': expected a string.")
        _check_content(message.get("content"), f"messages[{i}].content")


def _check_items(items: list[Any], where: str) -> None:
    for i, item in enumerate(items):
        if isinstance(item, dict):
            role = item.get("role")
            if role is not None and not isinstance(role, str):
                raise RequestError(f"{where}[{i}].role", f"Invalid '{where}[{i}].role': expected a string.")
            _check_content(item.get("content"), f"{where}[{i}].content")
        elif not isinstance(item, str):
            raise RequestError(
                f"{where}[{i}]",
                f"Invalid type for '{where}[{i}]': expected an object, but got {_typename(item)} instead.",
            )


def _check_content(content: Any, where: str) -> None:
    """Content is text or a list of typed parts whose `text`, where present, is text: anything else
    would let the signals read one prompt and the model another."""
    if content is None or isinstance(content, str):
        return
    if not isinstance(content, list):
        raise RequestError(
            where,
            f"Invalid type for '{where}': expected a string or an array of parts, "
            f"but got {_typename(content)} instead.",
        )
    for i, part in enumerate(content):
        if not isinstance(part, dict) or not isinstance(part.get("type"), str):
            raise RequestError(f"{where}[{i}]", f"Invalid '{where}[{i}]': expected an object with a 'type'.")
        if "text" in part and not isinstance(part["text"], str):
            raise RequestError(
                f"{where}[{i}].text", f"Invalid type for '{where}[{i}].text': expected a string."
            )


_ASKING = frozenset(
    {
        "logprobs",
        "top_logprobs",
        "n",
        "best_of",
        "echo",
        "logit_bias",
        "prompt_logprobs",
        "allowed_token_ids",
        "include",
    }
)


def asks(request: dict[str, Any], endpoint: str) -> tuple[Ask, ...]:
    """What a (type-checked) request asks for of the limits a tier sets."""
    if _ASKING.isdisjoint(request):
        return ()  # most calls ask for nothing a tier limits
    found: list[Ask] = []
    logprobs = request.get("logprobs")
    if endpoint == COMPLETIONS:
        if type(logprobs) is int:  # even 0 returns the sampled token's log-probability
            found += [Ask("logprobs", "logprobs"), Ask("top_logprobs", "logprobs", logprobs)]
    elif logprobs is True:
        found.append(Ask("logprobs", "logprobs"))
    top = request.get("top_logprobs")
    if type(top) is int and top > 0:
        found += [Ask("logprobs", "top_logprobs"), Ask("top_logprobs", "top_logprobs", top)]
    for name in ("n", "best_of"):
        value = request.get(name)
        if type(value) is int:
            found.append(Ask(name, name, value))
    if request.get("echo") is True and endpoint == COMPLETIONS:
        found.append(Ask("echo", "echo"))
    bias = request.get("logit_bias")
    if isinstance(bias, dict) and bias:
        found.append(Ask("logit_bias", "logit_bias", len(bias)))
    if type(request.get("prompt_logprobs")) is int:
        found.append(Ask("prompt_logprobs", "prompt_logprobs"))
    allowed = request.get("allowed_token_ids")
    if isinstance(allowed, list) and allowed:
        found.append(Ask("allowed_token_ids", "allowed_token_ids", len(allowed)))
    include = request.get("include")
    if isinstance(include, list):
        for entry in include:
            if entry == LOGPROBS_INCLUDE:
                found.append(Ask("logprobs", "include"))
            found.append(Ask("include", "include", entry))
    return tuple(found)


def asks_of_view(
    logprobs: bool, top_logprobs: int | None, logit_bias_size: int, n: int | None
) -> tuple[Ask, ...]:
    """What a recorded call asked for, from the parts a call view keeps (replay of old logs)."""
    found: list[Ask] = []
    if logprobs:
        found.append(Ask("logprobs", "logprobs"))
    if top_logprobs:
        found.append(Ask("top_logprobs", "top_logprobs", top_logprobs))
    if logit_bias_size:
        found.append(Ask("logit_bias", "logit_bias", logit_bias_size))
    if n is not None:
        found.append(Ask("n", "n", n))
    return tuple(found)


# The per-tier table: for each limit, whether an ask of that amount is within the tier's limit,
# and if not, why. Every extraction-relevant parameter above draws on exactly one row.
def _flag(allowed: Callable[[Tier], bool], what: str) -> Callable[[Tier, Ask], str | None]:
    def check(tier: Tier, ask: Ask) -> str | None:
        if allowed(tier):
            return None
        return ("" if ask.param == ask.limit else f"({what}) ") + "is not available"

    return check


def _at_most(limit: Callable[[Tier], int]) -> Callable[[Tier, Ask], str | None]:
    def check(tier: Tier, ask: Ask) -> str | None:
        most = limit(tier)
        return None if isinstance(ask.amount, int) and ask.amount <= most else f"is limited to {most}"

    return check


def _include(tier: Tier, ask: Ask) -> str | None:
    if ask.amount == LOGPROBS_INCLUDE or ask.amount in tier.include:
        return None  # the log-probabilities entry is checked as `logprobs`
    return f"may not contain {ask.amount!r}"


TIER_LIMITS: dict[str, Callable[[Tier, Ask], str | None]] = {
    "logprobs": _flag(lambda t: t.logprobs, "log-probabilities"),
    "top_logprobs": _at_most(lambda t: t.max_top_logprobs),
    "n": _at_most(lambda t: t.max_n),
    "best_of": _at_most(lambda t: t.max_best_of),
    "echo": _flag(lambda t: t.echo, "the prompt echoed with its log-probabilities"),
    "logit_bias": _flag(lambda t: t.logit_bias, "token biasing"),
    "prompt_logprobs": _flag(lambda t: t.prompt_logprobs, "log-probabilities of the prompt"),
    "allowed_token_ids": _flag(lambda t: t.allowed_token_ids, "sampling among chosen tokens"),
    "include": _include,
}


def tier_violation(requested: Iterable[Ask], tier: Tier, tier_name: str) -> tuple[str, str] | None:
    """The first ask over the tier's limits, as (parameter, reason), or None.

    >>> from distillguard.enforcement.policy import Tier
    >>> tier_violation([Ask("logprobs", "include")], Tier(), "free")
    ('include', "include (log-probabilities) is not available on the 'free' tier")
    >>> tier_violation([Ask("n", "n", 8)], Tier(max_n=8), "free") is None
    True
    """
    for ask in requested:
        problem = TIER_LIMITS[ask.limit](tier, ask)
        if problem is not None:
            return ask.param, f"{ask.param} {problem} on the {tier_name!r} tier"
    return None
