"""generation_request: the model is asked to produce training data (an input signal).

Covers the published generation pipelines: self-instruct/Alpaca task generation, few-shot
numbered task lists, Evol-Instruct rewriting, CAMEL task generation, instance generation, and
Magpie pre-query templates (a chat-template prefix whose user turn is empty, so the model writes
the "user" instruction itself).
"""

from __future__ import annotations

import re

from distillguard.events.call_view import CallView
from distillguard.signals.patterns import Pattern, PatternTable
from distillguard.signals.rules_and_model import RulesAndModelSignal

_ITEMS = r"(?:task|instruction|question|prompt|problem|example|exercise|conversation|dialogue|query|queries|sample|scenario)s?"

PATTERNS: tuple[Pattern, ...] = (
    Pattern(
        "come_up_with_tasks",
        "task_generation",
        0.85,
        rf"\bcome up with (?:a (?:set|list|series) of |a few |some |more )?(?:\d+ |twenty |ten )?(?:diverse |new |different |varied )?(?:task )?{_ITEMS}",
    ),
    Pattern(
        "generate_n_items",
        "task_generation",
        0.7,
        rf"\b(?:generate|create|write|produce|list|brainstorm|give me) (?:a (?:set|list) of |another |more |new )?(?:\d{{1,4}}|ten|twenty|fifty|hundred) (?:more |new |diverse |different |varied |unique |high-quality |challenging |realistic )*(?:\w+ )?{_ITEMS}\b",
    ),
    Pattern(
        "diverse_items",
        "task_generation",
        0.55,
        rf"\b(?:diverse|varied|unique|distinct|non-overlapping) (?:set of )?(?:task |user )?{_ITEMS}\b",
    ),
    Pattern(
        "list_of_tasks_header",
        "task_generation",
        0.6,
        r"^\s*list of \d+ tasks:?|^\s*task \d+\s*[:.]|^\s*\d+\. instruction:",
    ),
    Pattern(
        "series_of_tasks",
        "task_generation",
        0.8,
        r"\bcome up with a series of tasks\b|\bcome up with examples for the following tasks\b",
    ),
    Pattern(
        "camel_tasks",
        "task_generation",
        0.85,
        r"\blist \d+ diverse tasks that\b|\bbe concise\. be creative\.",
    ),
    Pattern(
        "for_training",
        "dataset_purpose",
        0.6,
        r"\b(?:to|for|will be used to) (?:train|fine-?tune|evaluate) (?:a |an |the |our )?(?:gpt |language |ai |llm |chat )?(?:model|llm|assistant|classifier)s?\b|\bsynthetic (?:training )?(?:data|dataset|examples|conversations)\b",
    ),
    Pattern(
        "instance_generation",
        "task_generation",
        0.6,
        r"\bgiven (?:a|the) (?:classification )?task,? (?:generate|come up with) (?:an? )?(?:input|output|instances?)|\bcan the following task be regarded as a classification task",
    ),
    Pattern("evol_given_prompt", "rewriting", 0.9, r"#(?:given|rewritten|created) prompt#"),
    Pattern(
        "evol_act_as", "rewriting", 0.85, r"\bi want you (?:to )?act as an? prompt (?:creator|rewriter)\b"
    ),
    Pattern(
        "rewrite_more_complex",
        "rewriting",
        0.75,
        r"\brewrite (?:a|the) given prompt into a more complex version|\bmake (?:it|the (?:prompt|instruction|question)) (?:a bit )?(?:harder|more (?:complex|difficult|challenging))|\b(?:add|increase) (?:one more |more )?(?:constraints?|requirements?|reasoning steps)\b",
    ),
    Pattern(
        "paraphrase_instructions",
        "rewriting",
        0.5,
        rf"\b(?:paraphrase|rewrite|rephrase|diversify) (?:the following |these |each of the )?(?:\d+ )?{_ITEMS}",
    ),
    Pattern(
        "chat_template_user",
        "pre_query_template",
        0.9,
        r"<\|start_header_id\|>user<\|end_header_id\|>|<\|im_start\|>user|<start_of_turn>user|<\|user\|>|\[INST\]|<｜begin▁of▁sentence｜>|<\|begin_of_text\|>|<\|endoftext\|>|^### instruction:\s*$",
    ),
    Pattern(
        "vicuna_user_prefix",
        "pre_query_template",
        0.5,
        r"a chat between a curious user and an artificial intelligence assistant",
    ),
    Pattern(
        "generation.zh",
        "task_generation",
        0.7,
        r"(?:生成|编写|列出|想出)\s*(?:\d+|一些|多个|若干)?\s*(?:个|条|道)?(?:多样的?|不同的?)?(?:任务|指令|问题|提示|示例)",
    ),
    Pattern(
        "generation.es",
        "task_generation",
        0.7,
        r"\bgenera (?:\d+ )?(?:instrucciones|tareas|preguntas|ejemplos) (?:diversas|variadas|diferentes)",
    ),
    Pattern(
        "generation.fr",
        "task_generation",
        0.7,
        r"\bgénère[rz]? (?:\d+ )?(?:instructions|tâches|questions|exemples) (?:diverses|variées|différentes)",
    ),
    Pattern(
        "generation.de",
        "task_generation",
        0.7,
        r"\berzeuge (?:\d+ )?(?:verschiedene |vielfältige )(?:anweisungen|aufgaben|fragen|beispiele)",
    ),
    Pattern(
        "generation.ru",
        "task_generation",
        0.7,
        r"(?:сгенерируй|придумай|составь) (?:\d+ )?(?:разнообразн|различн)\w* (?:задани|задач|инструкци|вопрос)",
    ),
)

# Openers of a user turn in the chat templates of common open models. When nothing follows the
# last one, the user turn is empty and the model is being asked to write it (Magpie).
_USER_TURN_OPENER = re.compile(
    r"<\|start_header_id\|>user<\|end_header_id\|>|<\|im_start\|>user|<start_of_turn>user|<\|user\|>|"
    r"\[INST\]|\bUSER:|\bUser:|\bHuman:|### Instruction:",
)


class GenerationRequest(RulesAndModelSignal):
    name = "generation_request"
    version = "1"
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
    table = PatternTable(PATTERNS, flags=re.IGNORECASE | re.MULTILINE)

    def rule_score(self, call: CallView, text: str) -> tuple[float, dict[str, float], list[str], list[str]]:
        _, parts, matched, adjustments = super().rule_score(call, text)
        prompt = call.prompt.strip()
        if call.n_user_turns > 0 and not prompt:
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
