from __future__ import annotations

import json
import re
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from distillguard.events.call_view import CallView, request_parts
from distillguard.signals import template
from distillguard.signals.template import Template, skeleton

SIGNAL = Template()


def test_fillings_of_one_template_share_a_fingerprint(call_of) -> None:
    a = call_of('Translate "good morning" into French. Answer in 3 words.')
    b = call_of('Translate "where is the station" into French. Answer in 12 words.')
    assert SIGNAL.fingerprint(a) == SIGNAL.fingerprint(b)


def test_distinct_questions_stay_distinct(call_of) -> None:
    prompts = [
        "What is the capital of Peru?",
        "How do I reverse a list in Python?",
        "Tell me a joke about cats.",
    ]
    assert len({SIGNAL.fingerprint(call_of(p)) for p in prompts}) == 3


def test_content_under_a_slot_header_is_removed() -> None:
    frame, removed = skeleton("Question:\nWhat is the airspeed of a swallow?\n\nAnswer:")
    assert frame == "question:\nanswer:"
    assert removed > 0


def test_fingerprint_is_short_stable_hex(call_of) -> None:
    fp = SIGNAL.fingerprint(call_of("hello there"))
    assert fp == SIGNAL.fingerprint(call_of("hello there")) and len(fp) == 16
    int(fp, 16)


def test_score_is_the_variable_share(call_of) -> None:
    bare = SIGNAL.analyze(call_of("What is the capital of Peru?"))
    templated = SIGNAL.analyze(call_of("Summarize the text below:\n" + "Long pasted article sentence. " * 40))
    assert bare.score < 0.5  # only "Peru" is a filling
    assert templated.score > 0.8
    assert templated.matched[0].startswith("fingerprint=")


def _views(messages: list[list[dict[str, str]]]) -> list[CallView]:
    from datetime import UTC, datetime

    ts = datetime(2026, 1, 1, tzinfo=UTC)
    return [CallView(event_id="e", ts=ts, account_id="a", **request_parts({"messages": m})) for m in messages]


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().split("\n") if line.strip()]


def test_real_templates_collapse_and_real_openers_do_not(shared_data: Path) -> None:
    r1 = _jsonl(shared_data / "distill/reasoning/r1_distillation_requests_reconstructed.jsonl")
    open_r1 = _views([r["messages"] for r in r1 if r["style"] == "open_r1"])
    assert len(open_r1) > 400
    assert len({SIGNAL.fingerprint(c) for c in open_r1}) == 1

    judge = _jsonl(shared_data / "distill/judge_ranking/alpaca_eval_judge_requests_reconstructed.jsonl")
    judge_views = _views([r["messages"] for r in judge])
    assert len({SIGNAL.fingerprint(c) for c in judge_views}) <= 3

    openers = _jsonl(shared_data / "benign/sharegpt_first_turns.jsonl")[:1000]
    opener_views = _views([[{"role": "user", "content": r["text"]}] for r in openers])
    distinct_texts = len({r["text"].strip().lower() for r in openers})
    fingerprints = {SIGNAL.fingerprint(c) for c in opener_views}
    # identical texts ("hi", "hello") legitimately share one; everything else should stay apart
    assert len(fingerprints) >= 0.95 * distinct_texts


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=" \t\f\v\nab\u00a0\u3000", max_size=40))
def test_blanks_collapse_as_the_regex_does(text: str) -> None:
    assert template.collapse_blanks(text) == template._BLANKS.sub(" ", text)


# the definition `template._INSERTED_NAME` is written for speed against
_INSERTED_NAME_AS_DEFINED = re.compile(r"(?<=[a-z,;] )(?!I\b)[A-Z][\w-]*(?: (?:of |and |the )?[A-Z][\w-]*)*")


@settings(max_examples=500, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [
                "I",
                "I'm",
                "Is",
                " ",
                "a ",
                ", ",
                "; ",
                ". ",
                "of ",
                "and ",
                "the ",
                "Foo",
                "Bar-Baz",
                "x1",
                "É",
                "\n",
            ]
        )
        | st.text(alphabet="aIZz ,;.-_1é\n", max_size=6),
        max_size=30,
    ).map("".join)
)
def test_inserted_names_match_as_defined(text: str) -> None:
    assert template._INSERTED_NAME.sub("\x01", text) == _INSERTED_NAME_AS_DEFINED.sub("\x01", text)


def test_fingerprints_of_a_batch_match_one_call_at_a_time(call_of) -> None:
    import pyarrow as pa

    prompts = ["Translate 'a' to French:", "Translate 'b' to French:", "What is 2+2?", "", "What is 2+2?"]
    systems = ["You are helpful.", "", None, "You are helpful.", "You are helpful."]
    batch = pa.record_batch({"system_prompt": pa.array(systems, pa.string()), "prompt": pa.array(prompts)})
    signal = Template()
    expected = [
        SIGNAL.fingerprint(
            CallView(event_id="", ts=call_of("x").ts, account_id="", system_prompt=s or "", prompt=p)
        )
        for s, p in zip(systems, prompts, strict=True)
    ]
    assert signal.fingerprints(batch).to_pylist() == expected
    assert signal.fingerprints(batch).to_pylist() == expected  # from the memo


def test_long_prompts_are_not_remembered_by_the_skeleton_memo() -> None:
    from distillguard.signals.base import MEMO_TEXT_CHARS
    from distillguard.signals.template import _skeleton, skeleton

    skeleton.cache_clear()
    long_prompt = "Question: " + "what is the answer to this long question? " * (MEMO_TEXT_CHARS // 40)
    assert len(long_prompt) > MEMO_TEXT_CHARS
    assert skeleton(long_prompt) == _skeleton(long_prompt)
    assert skeleton.cache_info().currsize == 0
    assert skeleton("Question: short") == _skeleton("Question: short")
    assert skeleton.cache_info().currsize == 1
