"""The corpus contract: one real prompt (CorpusItem), the kinds of prompt, and the three splits.

Shared by the simulator and the signal training code; change only by agreement.
"""

from __future__ import annotations

from dataclasses import dataclass

SPLITS = ("train", "dev", "test")

KINDS = (
    "chat",  # benign conversation openers and turns (ShareGPT, oasst en, arena-hard), coding included
    "non_english",  # benign prompts in other languages (oasst multilingual, ShareGPT, deccp Chinese)
    "roleplay_system",  # benign "act as ..." system-style prompts (awesome-chatgpt-prompts)
    "eval_question",  # benchmark questions a legitimate evaluation customer sends (MT-bench, Vicuna, ...)
    "redteam",  # abusive-but-not-distilling (hh-rlhf harmless red-team first turns)
    "bare_question",  # questions a careful harvester sends with no template (GSM8K, FLAN CoT, ...)
    "generation",  # asks the model to produce training data (self-instruct, Evol, CAMEL, Magpie, ...)
    "cot_request",  # R1-style "reason step by step ... \\boxed{}" requests, Orca system prompts
    "cot_reveal",  # requests to reveal / repeat / translate / encode / continue hidden reasoning (ours)
    "grading",  # judge / pairwise / ranking / rubric / reward-model requests
    "completion_collection",  # UltraFeedback-style completion requests with principle system prompts
    "hard_negative",  # benign prompts that look like reasoning extraction, and ordinary answers (ours)
)


@dataclass(frozen=True, slots=True)
class CorpusItem:
    """One prompt as a client would send it, with where it came from and which split it belongs to."""

    text: str  # the user turn exactly as a client would send it (template already applied)
    system: str = ""  # system prompt sent with it, if any
    messages: tuple[dict[str, str], ...] | None = None  # full list when more than system+user
    answer: str | None = None  # a real answer / rationale / reasoning trace when the corpus has one
    source: str = ""  # file-level origin, e.g. "sharegpt", "gsm8k_train", "judge_templates"
    family: str = ""  # template family: THE UNIT OF THE TRAIN/DEV/TEST SPLIT
    kind: str = ""  # one of KINDS
    split: str = ""  # one of SPLITS
    lang: str = "en"  # ISO 639-1
    group: str | None = None  # rows that belong together, e.g. the turns of one conversation

    @property
    def identity(self) -> tuple[str, str, tuple[tuple[tuple[str, str], ...], ...] | None]:
        """What a client actually sends: two items with equal identity are the same request."""
        messages = tuple(tuple(sorted(m.items())) for m in self.messages) if self.messages else None
        return (self.system, self.text, messages)
