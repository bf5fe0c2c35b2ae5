"""The prompts the simulator draws from: corpus items of ONE split, grouped the way traffic uses them.

Every prompt of a run, benign or adversarial, comes from families of the chosen split, so a
detector trained on `train` families is measured on `test` traffic built from families it never saw.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from distillguard.corpus import Corpus, CorpusItem

_CODE = re.compile(
    r"```|\bdef |\bfunction\b|\bclass \w|\bimport \w|#include|\bSELECT\b|\bregex\b|\bpython\b|\bjavascript\b|"
    r"\btypescript\b|\bjava\b|\bc\+\+|\brust\b|\bgolang\b|\bsql\b|\bbash\b|\bdocker|\breact\b|\bapi\b|"
    r"\bcompile|\bstack ?trace|\bexception\b|\bjson\b|\bhtml\b|\bcss\b|\bgit\b|\bkubernetes\b",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class Pools:
    split: str
    conversations: tuple[tuple[CorpusItem, ...], ...]  # English chat, turns of one conversation together
    coding: tuple[tuple[CorpusItem, ...], ...]
    openers: tuple[CorpusItem, ...]  # first turns, for apps behind one system prompt
    roleplay: tuple[CorpusItem, ...]
    non_english: tuple[CorpusItem, ...]
    redteam: tuple[CorpusItem, ...]
    eval_questions: tuple[CorpusItem, ...]
    grading: tuple[CorpusItem, ...]
    bare: tuple[CorpusItem, ...]
    math: tuple[CorpusItem, ...]  # word problems with a real worked solution
    generation: dict[str, tuple[CorpusItem, ...]]  # family -> items
    cot_request: dict[str, tuple[CorpusItem, ...]]
    cot_reveal: tuple[CorpusItem, ...]
    completion: tuple[CorpusItem, ...]

    def counts(self) -> dict[str, int]:
        return {
            "conversations": len(self.conversations),
            "coding_conversations": len(self.coding),
            "roleplay": len(self.roleplay),
            "non_english": len(self.non_english),
            "redteam": len(self.redteam),
            "eval_questions": len(self.eval_questions),
            "grading": len(self.grading),
            "bare": len(self.bare),
            "math": len(self.math),
            "generation": sum(len(v) for v in self.generation.values()),
            "cot_request": sum(len(v) for v in self.cot_request.values()),
            "cot_reveal": len(self.cot_reveal),
            "completion": len(self.completion),
        }


def _conversations(items: Sequence[CorpusItem]) -> list[tuple[CorpusItem, ...]]:
    grouped: dict[str, list[CorpusItem]] = {}
    singles: list[tuple[CorpusItem, ...]] = []
    for item in items:
        if item.group and item.source == "sharegpt":
            grouped.setdefault(item.group, []).append(item)
        else:
            singles.append((item,))
    return [tuple(turns) for turns in grouped.values()] + singles


def _by_family(items: Sequence[CorpusItem]) -> dict[str, tuple[CorpusItem, ...]]:
    families: dict[str, list[CorpusItem]] = {}
    for item in items:
        families.setdefault(item.family, []).append(item)
    return {family: tuple(v) for family, v in sorted(families.items())}


def build_pools(corpus: Corpus, split: str) -> Pools:
    def kind(name: str) -> list[CorpusItem]:
        return corpus.items(kind=name, split=split)

    chat = [i for i in kind("chat") if i.text.strip()]
    conversations = _conversations(chat)
    coding = [c for c in conversations if _CODE.search(c[0].text)]
    bare = kind("bare_question")
    math = [i for i in bare if i.answer and ("gsm8k" in i.source or i.source in ("flan_aqua",))]
    if not math:
        math = [i for i in bare if i.answer]
    pools = Pools(
        split=split,
        conversations=tuple(conversations),
        coding=tuple(coding),
        openers=tuple(c[0] for c in conversations if len(c[0].text) < 1500),
        roleplay=tuple(kind("roleplay_system")),
        non_english=tuple(kind("non_english")),
        redteam=tuple(kind("redteam")),
        eval_questions=tuple(kind("eval_question")),
        grading=tuple(kind("grading")),
        bare=tuple(bare),
        math=tuple(math),
        generation=_by_family(kind("generation")),
        cot_request=_by_family(kind("cot_request")),
        cot_reveal=tuple(kind("cot_reveal")),
        completion=tuple(kind("completion_collection")),
    )
    empty = [name for name, count in pools.counts().items() if count == 0]
    if empty:
        raise ValueError(f"corpus {corpus.root} has no {', '.join(empty)} prompts in split {split!r}")
    return pools
