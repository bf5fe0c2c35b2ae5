"""The simulator's own wording: three disjoint splits, used only in its split, and never the trace
cue words the reasoning_leak signal looks for."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from distillguard.corpus import SPLITS
from distillguard.events.call_view import view_of
from distillguard.events.model import event_decoder
from distillguard.signals.reasoning_leak import PATTERNS as TRACE_MARKERS
from distillguard.sim import responses, texts
from distillguard.sim.generate import generate
from distillguard.sim.scenario import load_preset
from distillguard.sim.wording import TABLES, texts_of, wording_for

CUES = re.compile("|".join(f"(?:{p.regex})" for p in TRACE_MARKERS), re.IGNORECASE | re.MULTILINE)


def _simulator_texts() -> list[str]:
    """Every string the simulator writes itself: wording tables, benign scaffolding, response parts."""
    out = [t for table in TABLES.values() for part in table.values() for e in part for t in texts_of(e)]
    for module in (texts, responses):
        for value in vars(module).values():
            out += _strings(value)
    out.append(responses.WORD_SALAD.text[:50_000])
    return out


def _strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, tuple | list):
        return [t for v in value for t in _strings(v)]
    return []


@pytest.mark.parametrize("name", sorted(TABLES))
def test_every_table_has_three_disjoint_splits(name: str) -> None:
    table = TABLES[name]
    assert set(table) == set(SPLITS)
    seen: dict[str, str] = {}
    for split in SPLITS:
        assert table[split], f"{name}: no {split} wording"
        for entry in table[split]:
            # (corpus phrase, our rewording) and (language, wrapper): only the second part is ours
            # a judge format's verdict is the model's answer, not the adversary's wording
            own = entry[1] if isinstance(entry, tuple) else getattr(entry, "prompt", entry)
            for text in texts_of(own):
                if text in ("{q}",) or len(text) < 3:
                    continue  # "no wrapper at all" belongs to every split
                assert seen.setdefault(text, split) == split, f"{name}: {text!r} in {seen[text]} and {split}"


def test_the_simulator_never_writes_trace_cue_words() -> None:
    planted = [(t[:80], m.group(0)) for t in _simulator_texts() for m in [CUES.search(t)] if m]
    assert not planted


def test_the_cue_pattern_would_catch_a_planted_opener() -> None:
    # the check above is only worth something if the detector's cue patterns fire at all
    for opener in ("<think>", "Let's verify that", "We need to find the"):
        assert CUES.search(opener), opener


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("careful_test_split")
    scenario = load_preset("careful-small")
    scenario.days = 3
    generate(scenario, seed=5, split="test", out=out)
    return out


def test_a_test_split_run_uses_no_train_or_dev_wording(run: Path) -> None:
    prompts = "\n".join(
        f"{v.system_prompt}\n{v.prompt}"
        for v in (view_of(event_decoder.decode(x)) for x in (run / "events.jsonl").read_bytes().splitlines())
    )
    test_words = wording_for("test")
    other = [wording_for(s) for s in ("train", "dev")]
    foreign = {j.prompt.split("{")[0] for w in other for j in w.judge_formats}
    foreign |= {p for w in other for p in w.cot_systems + w.paraphrased_wrappers if len(p) > 12}
    foreign |= {t for w in other for _, t in w.translated_wrappers}
    foreign = {f.split("{")[0].strip() for f in foreign} - {""}
    used = [f for f in foreign if f in prompts]
    assert not used
    # and the test split's own judge formats and sweep phrasings do appear
    assert any(j.prompt.split("{")[0] in prompts for j in test_words.judge_formats)
    assert any(x in prompts for pair in test_words.sweep_topics for x in pair)


def test_reasoning_and_leaked_traces_are_real_corpus_text(run: Path) -> None:
    from distillguard.corpus import load_corpus
    from distillguard.sim.pools import build_pools
    from distillguard.sim.traffic import Traffic

    corpus = load_corpus()
    traffic = Traffic([], build_pools(corpus, "test"), load_preset("careful-small").start, 5)
    thoughts = traffic.thoughts.text
    assert traffic.thoughts.real_chars == len(thoughts)  # nothing but corpus text, no filler
    answers = "\n".join(
        responses.without_calculator_marks(i.answer) for i in corpus.items(split="test") if i.answer
    )
    assert all(part in answers for part in thoughts.split("\n\n"))  # built from the split's answers
    real = thoughts + "\n\n" + traffic.prose.text + "\n\n" + answers
    checked = 0
    for line in (run / "events.jsonl").read_bytes().splitlines():
        view = view_of(event_decoder.decode(line))
        if view.reasoning_text:
            checked += 1
            assert view.reasoning_text in thoughts
        for text in (view.reasoning_text, view.response_text):
            for match in CUES.finditer(text):
                # a cue word in a trace or an answer is there because real text of the split has it:
                # the line holding it is corpus text (slices of real text are joined between lines)
                start = text.rfind("\n", 0, match.start())
                end = text.find("\n", match.end())
                line = text[start + 1 : len(text) if end < 0 else end].strip()
                assert responses.without_calculator_marks(line) in real, line[:200]
    assert checked > 50
