"""grading_request: the model is used as a judge, ranker or reward model (an input signal).

Judge templates (MT-bench, AlpacaEval, arena-hard, UltraFeedback) share a small vocabulary:
pairwise verdict formats, rubric scales, "output only the score", answer slots labelled A/B.
"""

from __future__ import annotations

from pathlib import Path

from distillguard.signals.patterns import Pattern, load_patterns
from distillguard.signals.rules_and_model import RulesAndModelSignal

# The rows, each with what it was written from: grading_request.yaml next to this module.
PATTERN_FILE = load_patterns(Path(__file__).with_name("grading_request.yaml"), signal="grading_request")
PATTERNS: tuple[Pattern, ...] = PATTERN_FILE.patterns


class GradingRequest(RulesAndModelSignal):
    name = "grading_request"
    version = "2"
    description = (
        "The model is used as a judge, ranker or reward model: pairwise comparisons, rankings of "
        "several responses, rubric scores, 'output only the score', [[A]]/[[B]] verdict formats."
    )
    known_false_positives = (
        "teachers grading essays with a rubric",
        "legitimate evaluation customers running LLM-as-judge benchmarks on their own outputs",
        "users asking which of two options (products, phrasings) is better",
    )
    reads = "input"
    table = PATTERN_FILE.table()
