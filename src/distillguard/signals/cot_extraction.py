"""cot_extraction: the request tries to obtain the model's reasoning (an input signal).

Three things are told apart in `parts`, because they mean different things at account level:
a step-by-step demand (students and tutoring apps send these too), a request to reveal, repeat,
translate or encode the model's own hidden reasoning (rarely innocent), and the system prompts and
templates that reasoning-distillation pipelines (R1, Bespoke/OpenThoughts, Orca) are known to send.
"""

from __future__ import annotations

from pathlib import Path

from distillguard.signals.patterns import Hit, Pattern, load_patterns
from distillguard.signals.rules_and_model import RulesAndModelSignal

# The rows, each with what it was written from: cot_extraction.yaml next to this module.
PATTERN_FILE = load_patterns(Path(__file__).with_name("cot_extraction.yaml"), signal="cot_extraction")
PATTERNS: tuple[Pattern, ...] = PATTERN_FILE.patterns
# a demand for worked steps alone never makes the rules fire (tutoring sends them)
STEP_BY_STEP_CAP = 0.45


class CotExtraction(RulesAndModelSignal):
    name = "cot_extraction"
    version = "2"
    description = (
        "The request tries to obtain the model's reasoning: step-by-step demands, R1/Bespoke/Orca "
        "distillation system prompts and templates, or requests to reveal, repeat, translate, "
        "encode hidden reasoning (with developer and audit pretexts), in several languages."
    )
    known_false_positives = (
        "students and tutoring apps asking for step-by-step help (part 'step_by_step' only)",
        "prompt engineers discussing chain-of-thought prompting",
        "researchers asking how reasoning models work",
    )
    reads = "input"
    table = PATTERN_FILE.table()

    def rules(
        self, prompt: str, n_user_turns: int, text: str, hits: list[Hit] | None = None
    ) -> tuple[float, dict[str, float], list[str], list[str]]:
        score, parts, matched, adjustments = super().rules(prompt, n_user_turns, text, hits)
        if parts["step_by_step"] > STEP_BY_STEP_CAP:
            # "show your work, step by step" is two demands for steps, still homework: the rows of
            # this aspect combine by noisy-or but never reach the firing range on their own
            adjustments.append(f"step_by_step capped: {parts['step_by_step']:.2f} -> {STEP_BY_STEP_CAP}")
            parts["step_by_step"] = STEP_BY_STEP_CAP
            score = max(parts.values())
        pretext = parts["pretext"]
        strongest = max(parts["reveal_hidden"], parts["step_by_step"], parts["distill_template"])
        if pretext > 0.0 and strongest > 0.0:
            # a developer or audit pretext wrapped around a reasoning request is the harvesting
            # pattern; either alone is common in ordinary traffic
            combined = round(1.0 - (1.0 - strongest) * (1.0 - pretext), 4)
            adjustments.append(f"pretext with a reasoning request: {strongest:.2f} -> {combined:.2f}")
            score = max(score, combined)
        return score, parts, matched, adjustments
