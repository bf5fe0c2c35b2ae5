"""grading_request: the model is used as a judge, ranker or reward model (an input signal).

Judge templates (MT-bench, AlpacaEval, arena-hard, UltraFeedback) share a small vocabulary:
pairwise verdict formats, rubric scales, "output only the score", answer slots labelled A/B.
"""

from __future__ import annotations

import re

from distillguard.signals.patterns import Pattern, PatternTable
from distillguard.signals.rules_and_model import RulesAndModelSignal

_RESPONSE = r"(?:responses?|answers?|outputs?|completions?|assistants?|replies|texts?|summar(?:y|ies)|models?|generations?)"

PATTERNS: tuple[Pattern, ...] = (
    Pattern(
        "verdict_brackets",
        "verdict_format",
        0.9,
        r"\[\[(?:A|B|C|[0-9](?:\.[0-9])?|10)\]\]|\[\[rating\]\]|\[\[score\]\]",
    ),
    Pattern(
        "verdict_labels",
        "verdict_format",
        0.8,
        r"\bA>>?B\b|\bB>>?A\b|\bA=B\b|\"?better_response\"?\s*:|\bmodel_identifier\b",
    ),
    Pattern(
        "impartial_judge",
        "judge_role",
        0.9,
        r"\b(?:act|serve) as an? (?:impartial|fair|objective|expert) (?:judge|evaluator|grader)",
    ),
    Pattern(
        "evaluate_quality",
        "judge_role",
        0.7,
        rf"\b(?:evaluate|assess|judge|grade|critique|rate|score|compare|annotate) (?:the )?(?:quality|helpfulness|correctness|accuracy|harmlessness) of (?:the |two |both |these |an? )?(?:ai )?{_RESPONSE}",
    ),
    Pattern(
        "which_is_better",
        "pairwise",
        0.8,
        rf"\bwhich (?:of the (?:two|following) )?(?:{_RESPONSE}) (?:is|was) (?:better|more helpful|preferred|superior)|\b(?:select|choose|pick) the (?:better|best) (?:{_RESPONSE})|\bpairwise (?:comparison|preference)",
    ),
    # A and B as separate rows (noisy-or gives 0.7 with both): one pattern spanning both with a gap
    # between them costs Hyperscan seconds to compile.
    Pattern("assistant_a", "pairwise", 0.45, r"\bassistant a\b|\[the start of assistant a'?s? answer\]"),
    Pattern("assistant_b", "pairwise", 0.45, r"\bassistant b\b|\[the start of assistant b'?s? answer\]"),
    Pattern("response_a_b", "pairwise", 0.3, r"\b(?:response|output|answer) [ab12]\s*[:\]]"),
    Pattern(
        "rank_responses",
        "ranking",
        0.8,
        rf"\brank(?:ing)? (?:the |these |all |each of the )?(?:following )?(?:\w+ )?{_RESPONSE}|\b(?:leaderboard|preference ranking)\b",
    ),
    Pattern(
        "rubric_scale",
        "rubric",
        0.6,
        r"\b(?:on a scale (?:of|from) (?:0|1) (?:to|-) (?:5|7|10|100))|\bscore (?:of|from|between) (?:0|1) (?:to|and|-) (?:5|7|10|100)|\brate (?:it|them|the \w+|each \w+) (?:from|on a scale|out of) ",
    ),
    Pattern(
        "score_only",
        "rubric",
        0.75,
        r"\b(?:output|return|give|respond with|reply with|print)(?: me)? (?:only|just) (?:the|a|one|your) (?:score|rating|number|grade|label|verdict|letter)|\bonly (?:output|return|respond with) (?:the|a) (?:score|rating|number|verdict)",
    ),
    Pattern(
        "rating_field",
        "rubric",
        0.55,
        r"^\s*(?:#+\s*)?(?:rating|score|rationale|verdict)\s*:\s*$|\"(?:score|rating)\"\s*:",
    ),
    Pattern(
        "reward_model",
        "judge_role",
        0.7,
        r"\b(?:act as|you are) (?:a|the) reward model\b|\breward score\b|\bpreference (?:data|label)",
    ),
    Pattern(
        "ultrafeedback_aspects",
        "rubric",
        0.7,
        r"\b(?:instruction following|honesty|truthfulness|helpfulness) assessment\b|\bhonesty and uncertainty\b|\b(?:informativeness|helpfulness) rating",
    ),
    Pattern(
        "grading.zh",
        "judge_role",
        0.7,
        r"(?:哪个|哪一个)(?:回答|回复|答案)更好|(?:给|对)(?:以下|这个|每个)?(?:回答|回复|答案)(?:打分|评分)|评分标准",
    ),
    Pattern(
        "grading.es",
        "judge_role",
        0.7,
        r"\b¿?cuál (?:respuesta|de las respuestas) es mejor|\bpuntúa (?:la|las) respuestas?|\bcalifica (?:la|las) respuestas?",
    ),
    Pattern(
        "grading.fr",
        "judge_role",
        0.7,
        r"\bquelle réponse est (?:la )?meilleure|\bnote[rz]? (?:la|les|cette) réponses?",
    ),
    Pattern(
        "grading.de",
        "judge_role",
        0.7,
        r"\bwelche antwort ist besser|\bbewerte (?:die|diese|beide) antworten?",
    ),
    Pattern(
        "grading.ru", "judge_role", 0.7, r"какой (?:из )?ответ\w* лучше|оцени\w* (?:ответ|качество ответ)"
    ),
    Pattern(
        "grading.ja", "judge_role", 0.7, r"どちらの(?:回答|応答)が(?:より)?良い|(?:回答|応答)を(?:評価|採点)"
    ),
    Pattern("grading.ko", "judge_role", 0.7, r"어느 (?:답변|응답)이 더 좋|(?:답변|응답)을 평가"),
    Pattern("grading.pt", "judge_role", 0.7, r"\bqual resposta é melhor|\bavalie (?:a|as) respostas?"),
    Pattern("grading.ar", "judge_role", 0.7, r"أي (?:الإجابتين|الردين|إجابة) أفضل|قيّم الإجابة"),
)


class GradingRequest(RulesAndModelSignal):
    name = "grading_request"
    version = "1"
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
    table = PatternTable(PATTERNS, flags=re.IGNORECASE | re.MULTILINE)
