"""generation_request: the model is asked to produce training data (an input signal).

Covers the published generation pipelines: self-instruct/Alpaca task generation, few-shot
numbered task lists, Evol-Instruct rewriting, CAMEL task generation, instance generation, and
Magpie pre-query templates (a chat-template prefix whose user turn is empty, so the model writes
the "user" instruction itself).
"""

from __future__ import annotations

import re
from pathlib import Path

from distillguard.signals.patterns import Hit, Pattern, load_patterns
from distillguard.signals.rules_and_model import RulesAndModelSignal

# The rows, each with what it was written from: generation_request.yaml next to this module.
PATTERN_FILE = load_patterns(Path(__file__).with_name("generation_request.yaml"), signal="generation_request")
PATTERNS: tuple[Pattern, ...] = PATTERN_FILE.patterns
_TEMPLATE_USER = next(p for p in PATTERNS if p.name == "chat_template_user")

# Openers of a user turn: the chat-template tokens of the rule above, and plain-text speaker labels.
# When nothing follows the last one, the user turn is empty and the model is being asked to write it
# (Magpie). This regex only finds where the user turn starts; it never scores on its own.
_USER_TURN_OPENER = re.compile(_TEMPLATE_USER.regex + r"|\bUSER:|\bUser:|\bHuman:|### Instruction:")


class GenerationRequest(RulesAndModelSignal):
    name = "generation_request"
    version = "2"
    description = (
        "The model is asked to produce training data: task/instruction generation, few-shot numbered "
        "task lists, instruction rewriting/evolution, instance generation, pre-query templates "
        "(a chat-template prefix with an empty user turn) or an empty user message."
    )
    known_false_positives = (
        "teachers asking for N practice questions for a class",
        "product teams generating test inputs or FAQ variants",
        "clients that send an empty message by mistake (one call; account-level features decide)",
    )
    reads = "input"
    table = PATTERN_FILE.table()

    def rules(
        self, prompt: str, n_user_turns: int, text: str, hits: list[Hit] | None = None
    ) -> tuple[float, dict[str, float], list[str], list[str]]:
        _, parts, matched, adjustments = super().rules(prompt, n_user_turns, text, hits)
        prompt = prompt.strip()
        if n_user_turns > 0 and not prompt:
            parts["pre_query_template"] = max(parts["pre_query_template"], 0.7)
            matched.append("pre_query_template/empty_user_turn: the user message is empty")
        elif parts["pre_query_template"] > 0.0:
            openers = list(_USER_TURN_OPENER.finditer(prompt))
            rest = prompt[openers[-1].end() :].strip() if openers else prompt
            if not rest:
                # only a chat-template prefix: the Magpie pre-query trick
                adjustments.append("chat-template prefix with an empty user turn: pre_query_template -> 0.95")
                parts["pre_query_template"] = 0.95
            else:
                # chat-template tokens around real text are also how people paste transcripts
                adjustments.append(
                    f"chat-template tokens around {len(rest)} characters of text: pre_query_template -> 0.3"
                )
                parts["pre_query_template"] = 0.3
        return max(parts.values()), parts, matched, adjustments
