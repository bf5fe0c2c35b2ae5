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


# The skeleton as first written: `template._skeleton` finds the same spans, numbers and lines faster
# (a spans pattern without the URL branch, numbers read on ASCII bytes, first-character checks).
_VARIABLE_SPANS_AS_WRITTEN = re.compile(
    r"[`\"'“«「h]"
    r"(?:(?<=`)``.*?(?:```|$)"
    r'|(?<=")""[\s\S]*?(?:"""|$)'
    r'|(?<=")[^"\n]{0,400}"'
    r"|(?<=')(?<!\w')[^'\n]{1,200}'(?!\w)"
    r"|(?<=“)[^”]{0,400}”|(?<=«)[^»]{0,400}»|(?<=「)[^」]{0,400}」|(?<=`)[^`\n]{1,200}`"
    r"|(?<=h)ttps?://\S+)",
    re.DOTALL,
)
_NUMBER_AS_WRITTEN = re.compile(r"\d+(?:[.,]\d+)*")
_BLANKS_AS_WRITTEN = re.compile(r"[ \t\f\v]+")


def _skeleton_as_written(text: str) -> tuple[str, int]:
    original = len(text)
    text = _VARIABLE_SPANS_AS_WRITTEN.sub(" \x01 ", template._cut_outside_fences(text))
    text = _NUMBER_AS_WRITTEN.sub("\x01", _INSERTED_NAME_AS_DEFINED.sub("\x01", text))
    text = _BLANKS_AS_WRITTEN.sub(" ", text).lower()
    kept: list[str] = []
    in_slot = False
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        strong = (
            re.match(r"^(?:#{1,6}\s.*|\[[^\]]{1,80}\]|#[^#\n]{1,40}#\s*:?|[-=*_#]{3,})$", line) is not None
        )
        if not strong and re.match(r"^[\W#\x01]*$", line):
            continue
        colon = line.endswith(":")
        if strong or (not in_slot and colon and len(line) <= template.LONG_LINE + 1):
            kept.append(line)
            in_slot = True
        elif in_slot:
            if colon and re.match(r"^[^:()<>=\[\]{}]{1,30}:$", line):
                kept.append(line)
        elif len(line) < template.LONG_LINE:
            inline = re.match(r"^([^:\n]{1,30}):\s+\S.*$", line) if ":" in line else None
            kept.append(inline.group(1) + ":" if inline else line)
    frame = "\n".join(kept)
    return frame, max(0, original - len(frame.replace("\x01", "")))


# Pieces that meet the edge cases of each step: quotes and fences (closed, open, nested), URLs and
# their parts, numbers with separators, digits of other scripts (Nd, which `\d` reads) and digit-like
# characters it does not read, capitalised runs after ", " / "; " / a word, a lone "I", slot headers
# and colons, every line break and blank `str.splitlines` and `strip` know, \x01 in the input.
_PIECES = [
    *['"', "'", "`", "```", '"""', "“", "”", "«", "»", "「", "」", "'s", "don't", " 'quoted' "],
    *["http://a.b/c", "https://x.y", "h", "ttp", "ttps://", "://", "http", "https://"],
    *["0", "7", "12", "1,000", "3.14", "1.2.3", "4,", ".5", ",", ".", "٣", "१२", "٣.٤", "²", "½", "Ⅻ", "𝟙"],
    *["Foo", "Bar-Baz", "I", "I'm", "Is", "Of", "of ", "and ", "the ", "a ", ", ", "; ", ". "],
    *["x1", "É", "İ", "ß", "-", "*", "=", "(", "_x", "__", "#", "[", "<", "\x01"],
    *[":", "Question:", "Answer: yes", "## Instruction", "[The Start of Answer]", "#Given Prompt#:", "---"],
    *["\n___\n", "\n***\n", "\n-=-\n", "\n# Title\n", "\n[Tag]\n", "\n#Given#\n"],
    *[" ", "  ", "\t", "\f", "\v", "\n", "\n\n", "\r\n", "\r", "\x1c", "\x1f", "\x85", "\u2028"],
    *["\xa0", "\u3000", "x" * 120, "word " * 50, "Name " * 30, "9" * 50],
]
_TEXTS = st.one_of(
    st.lists(st.sampled_from(_PIECES) | st.text(max_size=4), max_size=60).map("".join),
    st.text(max_size=80),
    st.lists(st.sampled_from(_PIECES), max_size=400).map("".join),  # long: head and tail cut apart
)


@settings(max_examples=3000, deadline=None)
@given(_TEXTS)
def test_skeleton_is_the_skeleton_as_written(text: str) -> None:
    assert template._skeleton(text) == _skeleton_as_written(text)


@settings(max_examples=1000, deadline=None)
@given(st.text(alphabet="0123456789.,a \x01٣²", max_size=30) | _TEXTS)
def test_numbers_are_removed_as_written(text: str) -> None:
    assert template._without_numbers(text) == _NUMBER_AS_WRITTEN.sub("\x01", text)


def test_skeletons_of_real_prompts_are_the_skeletons_as_written(shared_data: Path) -> None:
    texts = [r["text"] for r in _jsonl(shared_data / "benign/sharegpt_first_turns.jsonl")[:3000]]
    for name in ("r1_distillation_requests_reconstructed", "alpaca_eval_judge_requests_reconstructed"):
        for path in shared_data.glob(f"distill/*/{name}.jsonl"):
            texts += [m["content"] for r in _jsonl(path)[:500] for m in r["messages"]]
    assert len(texts) > 3000
    for text in texts:
        assert template._skeleton(text) == _skeleton_as_written(text), text[:200]
