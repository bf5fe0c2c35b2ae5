from __future__ import annotations

import pytest

from distillguard.signals.generation_request import GenerationRequest

RULES = GenerationRequest(mode="rules")

CASES = [
    (
        "You are asked to come up with a set of 20 diverse task instructions.",
        "task_generation",
        0.85,
        "come_up_with_tasks",
    ),
    (
        "List 10 diverse tasks that Chef can assist Gamer cooperatively to achieve together.\nBe concise. "
        "Be creative.",
        "task_generation",
        0.85,
        "camel_tasks",
    ),
    (
        "I want you act as a Prompt Rewriter. Rewrite the #Given Prompt# into a more complex version.",
        "rewriting",
        0.9,
        "evol_given_prompt",
    ),
    (
        "Generate 50 diverse questions about chemistry that will be used to fine-tune a language model.",
        "task_generation",
        0.7,
        "generate_n_items",
    ),
    (
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n",
        "pre_query_template",
        0.95,
        "chat_template_user",
    ),
    ("<|im_start|>user\n", "pre_query_template", 0.95, "chat_template_user"),
    ("请生成10个多样的任务指令。", "task_generation", 0.7, "generation.zh"),
    ("What is the boiling point of water at altitude?", None, 0.0, None),
    ("Write a cover letter for a junior data analyst position.", None, 0.0, None),
]


@pytest.mark.parametrize(("prompt", "aspect", "minimum", "row"), CASES)
def test_rule_table(call_of, prompt: str, aspect: str | None, minimum: float, row: str | None) -> None:
    result = RULES.analyze(call_of(prompt))
    assert result is not None
    if aspect is None:
        assert result.score == 0.0 and result.matched == []
        return
    assert result.parts[aspect] >= minimum, result
    assert any(m.startswith(f"{aspect}/{row}:") for m in result.matched), result.matched


def test_empty_user_turn_is_a_pre_query_template(call_of) -> None:
    result = RULES.analyze(call_of("", n_user_turns=1))
    assert result is not None and result.parts["pre_query_template"] >= 0.7
    assert any("empty_user_turn" in m for m in result.matched)


def test_template_tokens_around_real_text_are_weak_and_say_why(call_of) -> None:
    result = RULES.analyze(call_of("<|im_start|>user\nHow do I bake bread?<|im_end|>"))
    assert result is not None and result.score < 0.5
    assert any("chat-template tokens around" in a for a in result.adjustments)


def test_magpie_templates_of_train_and_dev_families(shared_data, call_of) -> None:
    """The rules were written from these (the Gemma and other vendors' templates are TEST families,
    measured by `distillguard bench signals`, not here)."""
    from distillguard.corpus import load_corpus

    items = [
        i for i in load_corpus(shared_data).items(kind="generation") if i.family.startswith("gen:magpie")
    ]
    known = [i for i in items if i.split != "test"]
    assert len(known) >= 6
    assert min(RULES.analyze(call_of(i.text)).score for i in known) >= 0.9  # type: ignore[union-attr]
