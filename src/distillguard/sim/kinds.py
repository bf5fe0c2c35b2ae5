"""What a call asks for (its prompt kind) and what that implies: how long the answer and the reasoning
are, and the token budget a client that budgets per kind sets.

Lengths depend on the KIND of prompt only, never on who sends it: a distiller's math question gets an
answer drawn from the same distribution as a student's. Kinds are decided from the text as sent, by
one function for every account (and for anybody measuring the traffic).
"""

from __future__ import annotations

import math
import random
import re

PROMPT_KINDS = ("chat", "code", "math", "qa", "classification", "judge")

CODE = re.compile(
    r"```|\bdef |\bfunction\b|\bclass \w|\bimport \w|#include|\bSELECT\b|\bregex\b|\bpython\b|\bjavascript\b|"
    r"\btypescript\b|\bjava\b|\bc\+\+|\brust\b|\bgolang\b|\bsql\b|\bbash\b|\bdocker|\breact\b|\bapi\b|"
    r"\bcompile|\bstack ?trace|\bexception\b|\bjson\b|\bhtml\b|\bcss\b|\bgit\b|\bkubernetes\b",
    re.IGNORECASE,
)
_DIGIT = re.compile(r"\d")
_MATH = re.compile(
    r"\\frac|\\boxed|\\sqrt|\$[^$]+\$|\bsolve\b|\bequation\b|\bintegral\b|\bderivative\b|\bprobability\b|"
    r"\bhow (?:many|much|long|far|old)\b|\bwhat (?:is|was|will be) the (?:total|sum|average|price|cost|"
    r"value|number|area|ratio|percentage)\b|\bcalculate\b|\bper cent\b|%",
    re.IGNORECASE,
)


def prompt_kind(text: str) -> str:
    """The kind of an ordinary prompt, from the text as sent: code, maths, a short question, or
    chat. Classification and judge prompts are known to their sender (see `Traffic`)."""
    head = text[:4000]
    if CODE.search(head):
        return "code"
    if _DIGIT.search(head) and _MATH.search(head):
        return "math"
    if "Options:" in head or (len(text) < 300 and text.rstrip().endswith("?")):
        return "qa"
    return "chat"


# Kinds whose real corpus answers (worked solutions, rationales) read like a model's answer: calls of
# these kinds answer with them when the prompt has one, and placeholders take their lengths.
REAL_ANSWER_KINDS = ("math", "qa")


# Characters of a visible answer, by kind: (median, log-normal sigma, floor, ceiling). Shaped after
# public chat logs: code answers run longest, classification labels are a line, judges write a short
# justification and a verdict.
_REPLY = {
    "chat": (900, 0.65, 60, 6000),
    "code": (1500, 0.6, 120, 8000),
    "math": (700, 0.55, 80, 4000),
    "qa": (350, 0.6, 40, 2000),
    "classification": (60, 0.4, 8, 400),
    "judge": (450, 0.6, 20, 2500),
}
# Characters of a reasoning trace (reasoning models), by kind: maths reasons longest.
_REASONING = {
    "chat": (1400, 0.6, 200, 8000),
    "code": (2200, 0.6, 300, 10000),
    "math": (3000, 0.6, 400, 14000),
    "qa": (900, 0.6, 150, 5000),
    "classification": (300, 0.5, 60, 2000),
    "judge": (1200, 0.6, 200, 6000),
}
# max_tokens of a client that budgets per kind of request
BUDGET = {"chat": 2048, "code": 4096, "math": 2048, "qa": 1024, "classification": 256, "judge": 1024}


def _draw(spec: tuple[int, float, int, int], rng: random.Random) -> int:
    median, sigma, low, high = spec
    return int(min(high, max(low, rng.lognormvariate(math.log(median), sigma))))


def reply_chars(kind: str, rng: random.Random) -> int:
    return _draw(_REPLY[kind], rng)


def reasoning_chars(kind: str, rng: random.Random) -> int:
    return _draw(_REASONING[kind], rng)
