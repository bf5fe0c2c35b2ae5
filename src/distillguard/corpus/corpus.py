"""Load the real-prompt corpus (shipped sample or the full development corpora) and its split.

The split is by template family, never by row, and lives in split.yaml next to this module, so a
detector trained on `train` families is always measured on families it never saw.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from distillguard.corpus import sources as s
from distillguard.corpus.items import KINDS, SPLITS, CorpusItem
from distillguard.corpus.lang import guess_lang

SAMPLE_DIR = Path(str(resources.files("distillguard.corpus") / "sample"))
SPLIT_FILE = Path(str(resources.files("distillguard.corpus") / "split.yaml"))
COT_REVEAL_FILE = Path(str(resources.files("distillguard.corpus") / "cot_reveal.yaml"))
HARD_NEGATIVES_FILE = Path(str(resources.files("distillguard.corpus") / "hard_negatives.yaml"))


@dataclass(frozen=True, slots=True)
class Source:
    """One file of the development corpora and how to read it."""

    name: str
    path: str  # relative to the corpus root
    read: Callable[[Path], list[s.CorpusItem]]
    licence: str
    shipped: bool  # a subset of it ships in the package sample
    sample_rows: int | None = None  # rows kept in the sample (None: all)
    sample_path: str | None = None  # where the sample stores it, when not at `path`


_JUDGED_PAIRS = "distill/orca_cot/orca_dpo_pairs_sample_validation.jsonl"


def _read_judge_templates(path: Path) -> list[CorpusItem]:
    pairs_path = path.parents[1] / "orca_cot" / Path(_JUDGED_PAIRS).name
    return s.fill_judge_templates(path, s.read_judged_pairs(pairs_path))


SOURCES: tuple[Source, ...] = (
    Source("oasst_en", "benign/oasst_prompts_en.jsonl", s.read_oasst_en, "Apache-2.0", True),
    Source(
        "oasst_multilingual",
        "benign/oasst_multilingual_60.jsonl",
        s.read_oasst_multilingual,
        "Apache-2.0",
        True,
    ),
    Source(
        "awesome_chatgpt_prompts",
        "benign/awesome_chatgpt_prompts.csv",
        s.read_awesome_prompts,
        "CC0-1.0",
        True,
    ),
    Source("arena_hard", "benign/arena_hard_v0.1_questions.jsonl", s.read_arena_hard, "Apache-2.0", True),
    Source(
        "mt_bench",
        "benign/eval_benchmarks/mt_bench_question.jsonl",
        s._turns_reader("mt_bench"),
        "Apache-2.0",
        True,
    ),
    Source(
        "vicuna_bench",
        "benign/eval_benchmarks/vicuna_bench_question.jsonl",
        s._turns_reader("vicuna_bench"),
        "Apache-2.0",
        True,
    ),
    Source(
        "self_instruct_user_oriented",
        "benign/eval_benchmarks/self_instruct_user_oriented_instructions.jsonl",
        s.read_self_instruct_user_oriented,
        "Apache-2.0",
        True,
    ),
    Source(
        "wizardlm_testset",
        "benign/eval_benchmarks/WizardLM_testset.jsonl",
        s.read_wizardlm_testset,
        "CC-BY-NC-4.0",
        False,
    ),
    Source(
        "hh_rlhf_harmless", "confounders/hh_rlhf_harmless_first_turns.jsonl", s.read_hh_harmless, "MIT", True
    ),
    Source("deccp_censored", "audit/deccp/censored.txt", s._deccp_reader("censored"), "Apache-2.0", True),
    Source("deccp_other", "audit/deccp/other.txt", s._deccp_reader("other"), "Apache-2.0", True),
    Source(
        "deccp_uncensored", "audit/deccp/uncensored.txt", s._deccp_reader("uncensored"), "Apache-2.0", True
    ),
    Source(
        "gsm8k_train", "distill/reasoning/gsm8k/train.jsonl", s._gsm8k_reader("gsm8k_train"), "MIT", True, 600
    ),
    Source(
        "gsm8k_test", "distill/reasoning/gsm8k/test.jsonl", s._gsm8k_reader("gsm8k_test"), "MIT", True, 600
    ),
    *(
        Source(
            f"flan_{name}",
            f"distill/orca_cot/flan_v2_cot_data/{name}_train.tsv",
            s._flan_reader(name),
            "Apache-2.0",
            True,
            250,
        )
        for name in ("aqua", "creak", "ecqa", "gsm8k", "qasc", "sensemaking", "strategyqa")
    ),
    Source(
        "aime24", "distill/reasoning/math_eval/aime24_test.jsonl", s._math_eval_reader("aime24"), "MIT", True
    ),
    Source(
        "amc23", "distill/reasoning/math_eval/amc23_test.jsonl", s._math_eval_reader("amc23"), "MIT", True
    ),
    Source(
        "minerva_math",
        "distill/reasoning/math_eval/minerva_math_test.jsonl",
        s._math_eval_reader("minerva_math"),
        "Apache-2.0",
        True,
        150,
    ),
    Source(
        "alpaca_noinput",
        "distill/selfinstruct_alpaca/alpaca_instructions_noinput_from_deccp_harmless.txt",
        s.read_alpaca_noinput,
        "CC-BY-NC-4.0",
        False,
    ),
    Source(
        "self_instruct_seed",
        "distill/selfinstruct_alpaca/seed_tasks_175.jsonl",
        s.read_seed_tasks,
        "Apache-2.0",
        False,
    ),
    Source(
        "r1_reconstructed",
        "distill/reasoning/r1_distillation_requests_reconstructed.jsonl",
        s.read_r1_reconstructed,
        "Apache-2.0 templates, MIT/Apache-2.0 problems",
        True,
        400,
    ),
    Source(
        "s1k_fixture",
        "distill/reasoning/s1k_style_5row_fixture_from_curator_tests.parquet",
        s.read_s1k_fixture,
        "Apache-2.0 (bespokelabs curator test fixture)",
        True,
        None,
        "distill/reasoning/s1k_style_5row_fixture_from_curator_tests.jsonl",
    ),
    Source(
        "orca_reconstructed",
        "distill/orca_cot/orca_style_cot_prompts_reconstructed.jsonl",
        s.read_orca_reconstructed,
        "MIT (OpenOrca system messages) / Apache-2.0 (FLAN)",
        True,
        700,
    ),
    Source(
        "openorca",
        "distill/orca_cot/orca_dpo_pairs_sample_prompts.jsonl",
        s.read_openorca,
        "Apache-2.0 (Intel/orca_dpo_pairs)",
        True,
    ),
    Source(
        "alpaca_generation_reconstructed",
        "distill/selfinstruct_alpaca/alpaca_generation_prompts_reconstructed.jsonl",
        s._prompt_reader("alpaca_generation_reconstructed", lambda row: "gen:alpaca_encode_prompt"),
        "CC-BY-NC-4.0 (embeds Alpaca data)",
        False,
    ),
    Source(
        "self_instruct_bootstrap_reconstructed",
        "distill/selfinstruct_alpaca/self_instruct_bootstrap_prompts_reconstructed.jsonl",
        s._prompt_reader("self_instruct_bootstrap_reconstructed", lambda row: "gen:self_instruct_bootstrap"),
        "CC-BY-NC-4.0 (embeds Alpaca instructions)",
        False,
    ),
    Source(
        "evol_instruct_reconstructed",
        "distill/evol_instruct/evol_instruct_prompts_reconstructed.jsonl",
        s._prompt_reader("evol_instruct_reconstructed", lambda row: f"gen:evol_{row['evol_type']}"),
        "CC-BY-NC-4.0 (embeds Alpaca instructions)",
        False,
    ),
    Source(
        "camel_reconstructed",
        "distill/camel/camel_task_generation_prompts_reconstructed.jsonl",
        s._prompt_reader("camel_reconstructed", lambda row: f"gen:camel_{str(row['kind']).split('.')[0]}"),
        "Apache-2.0",
        True,
    ),
    Source("magpie_templates", "distill/magpie/magpie_pre_query_templates.jsonl", s.read_magpie, "MIT", True),
    Source(
        "judge_templates",
        "distill/judge_ranking/judge_templates.jsonl",
        _read_judge_templates,
        "Apache-2.0/MIT",
        True,
    ),
    Source(
        "alpaca_eval_judge_reconstructed",
        "distill/judge_ranking/alpaca_eval_judge_requests_reconstructed.jsonl",
        s._messages_reader("alpaca_eval_judge_reconstructed", "grading", lambda row: "judge:alpaca_eval"),
        "Apache-2.0 code; embeds AlpacaEval instructions (CC-BY-NC-4.0)",
        False,
    ),
    Source(
        "ultrafeedback_annotation_reconstructed",
        "distill/ultrafeedback/ultrafeedback_annotation_requests_reconstructed.jsonl",
        s._messages_reader(
            "ultrafeedback_annotation_reconstructed", "grading", lambda row: "judge:ultrafeedback"
        ),
        "MIT code; embeds AlpacaEval instructions (CC-BY-NC-4.0)",
        False,
    ),
    Source(
        "ultrafeedback_completion_reconstructed",
        "distill/ultrafeedback/ultrafeedback_completion_requests_reconstructed.jsonl",
        s._messages_reader(
            "ultrafeedback_completion_reconstructed",
            "completion_collection",
            # a family is a bucket of the principle system prompts (the template), three per principle
            lambda row: (
                f"complete:ultrafeedback_{row['principle']}_b{s.stable_bucket(row['messages'][0]['content'], 3)}"
            ),
        ),
        "MIT (FLAN subset only in the sample: the ShareGPT subset embeds ShareGPT prompts)",
        True,
    ),
    # last: people pasted curated prompts (awesome "act as", benchmark questions) into ShareGPT, and
    # the first copy seen wins the cross-split de-duplication
    Source("sharegpt", "benign/sharegpt_human_turns.jsonl", s.read_sharegpt_turns, "unclear", False),
)

# Files the readers need besides the item sources (shipped with the sample too).
AUXILIARY_FILES = (
    ("distill/orca_cot/orca_system_prompts_16.json", "MIT (OpenOrca system messages)"),
    (_JUDGED_PAIRS, "Apache-2.0 (Intel/orca_dpo_pairs)"),
)


class SplitTable:
    """family -> split, from split.yaml, validated on load."""

    def __init__(self, path: Path = SPLIT_FILE) -> None:
        self.path = path
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as error:
            raise ValueError(f"{path}: not valid YAML ({error})") from error
        if not isinstance(data, dict) or not isinstance(data.get("families"), dict):
            raise ValueError(f"{path}: field 'families' must be a mapping of split -> list of families")
        self.split_of: dict[str, str] = {}
        for split, families in data["families"].items():
            if split not in SPLITS:
                raise ValueError(
                    f"{path}: field 'families.{split}': unknown split, allowed: {', '.join(SPLITS)}"
                )
            if not isinstance(families, list) or not all(isinstance(f, str) for f in families):
                raise ValueError(f"{path}: field 'families.{split}' must be a list of family names")
            for family in families:
                if family in self.split_of:
                    raise ValueError(
                        f"{path}: field 'families.{split}': family {family!r} is already in split "
                        f"{self.split_of[family]!r}"
                    )
                self.split_of[family] = split

    def split(self, family: str, where: str) -> str:
        try:
            return self.split_of[family]
        except KeyError:
            raise ValueError(
                f"{self.path}: family {family!r} (from {where}) has no split; add it to the table"
            ) from None


def read_cot_reveal(path: Path = COT_REVEAL_FILE) -> list[CorpusItem]:
    """Our own requests to reveal hidden reasoning: families of phrasings in many languages."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ValueError(f"{path}: not valid YAML ({error})") from error
    families = data.get("families") if isinstance(data, dict) else None
    if not isinstance(families, dict):
        raise ValueError(f"{path}: field 'families' must be a mapping of family -> language -> phrasings")
    items = []
    for family, by_lang in families.items():
        if not isinstance(by_lang, dict):
            raise ValueError(f"{path}: field 'families.{family}' must map a language code to phrasings")
        for lang, phrasings in by_lang.items():
            if not isinstance(phrasings, list) or not all(
                isinstance(p, str) and p.strip() for p in phrasings
            ):
                raise ValueError(
                    f"{path}: field 'families.{family}.{lang}' must be a list of non-empty strings"
                )
            for text in phrasings:
                items.append(
                    CorpusItem(
                        text=text.strip(),
                        source="cot_reveal_phrasings",
                        family=f"reveal:{family}",
                        kind="cot_reveal",
                        lang=str(lang),
                    )
                )
    return items


def read_hard_negatives(path: Path = HARD_NEGATIVES_FILE) -> list[CorpusItem]:
    """Our own labelled hard negatives: category -> group -> items; a group is a family."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ValueError(f"{path}: not valid YAML ({error})") from error
    categories = data.get("categories") if isinstance(data, dict) else None
    if not isinstance(categories, dict):
        raise ValueError(f"{path}: field 'categories' must map a category to its groups")
    items = []
    for category, groups in categories.items():
        if not isinstance(groups, dict) or not groups:
            raise ValueError(f"{path}: field 'categories.{category}' must map a group name to its items")
        for group, rows in groups.items():
            where = f"categories.{category}.{group}"
            if not isinstance(rows, list) or not rows:
                raise ValueError(f"{path}: field '{where}' must be a non-empty list of items")
            for number, row in enumerate(rows):
                items.append(_hard_negative(row, path, f"{where}[{number}]", f"hardneg:{category}_{group}"))
    return items


_HARD_NEGATIVE_FIELDS = ("text", "system", "answer")


def _hard_negative(row: Any, path: Path, where: str, family: str) -> CorpusItem:
    if isinstance(row, str):
        row = {"text": row}
    if not isinstance(row, dict):
        raise ValueError(f"{path}: field '{where}' must be a string or a mapping with 'text'")
    unknown = sorted(set(row) - set(_HARD_NEGATIVE_FIELDS))
    if unknown:
        raise ValueError(
            f"{path}: field '{where}': unknown key(s) {unknown}; allowed: {', '.join(_HARD_NEGATIVE_FIELDS)}"
        )
    for key in _HARD_NEGATIVE_FIELDS:
        value = row.get(key, "")
        if not isinstance(value, str) or (key == "text" and not value.strip()):
            raise ValueError(f"{path}: field '{where}.{key}' must be a non-empty string")
    text = str(row["text"]).strip()
    return CorpusItem(
        text=text,
        system=str(row.get("system", "")).strip(),
        answer=str(row["answer"]).strip() if row.get("answer") else None,
        source="hard_negatives",
        family=family,
        kind="hard_negative",
        lang=guess_lang(text),
    )


class Corpus:
    """Every item of a corpus root with its split; queries return items in a deterministic order."""

    def __init__(self, items: list[CorpusItem], root: Path, duplicates_dropped: int = 0) -> None:
        self.root = root
        self.duplicates_dropped = duplicates_dropped
        self._items = tuple(items)
        self._sources = sorted({i.source for i in items})
        self._by_kind_split: dict[tuple[str, str], list[CorpusItem]] = {}
        for item in self._items:
            self._by_kind_split.setdefault((item.kind, item.split), []).append(item)

    @staticmethod
    def _check(value: str | None, allowed: tuple[str, ...] | list[str], what: str) -> None:
        if value is not None and value not in allowed:
            raise ValueError(f"unknown {what} {value!r}; allowed: {', '.join(allowed)}")

    def items(
        self, kind: str | None = None, split: str | None = None, source: str | None = None
    ) -> list[CorpusItem]:
        self._check(kind, KINDS, "kind")
        self._check(split, SPLITS, "split")
        self._check(source, self._sources, "source")
        if kind is not None and split is not None:
            chosen = self._by_kind_split.get((kind, split), [])
        else:
            chosen = [
                i
                for i in self._items
                if (kind is None or i.kind == kind) and (split is None or i.split == split)
            ]
        if source is not None:
            return [i for i in chosen if i.source == source]
        return list(chosen)

    def families(self, kind: str | None = None) -> dict[str, str]:
        self._check(kind, KINDS, "kind")
        return {i.family: i.split for i in self._items if kind is None or i.kind == kind}

    @property
    def sources(self) -> list[str]:
        return list(self._sources)

    def __len__(self) -> int:
        return len(self._items)


def _dedupe(items: list[CorpusItem]) -> tuple[list[CorpusItem], int]:
    """Keep a user turn in one split only: a text already seen in another split is dropped, and so
    is an exact repeat of a request within its family.

    Upstream files overlap (oasst samples drawn with different seeds, FLAN questions reused by the
    Orca rows, benchmark problems inside R1 requests, curated prompts pasted into ShareGPT); the
    same text in a train and a test family would let a detector memorise test prompts. The same text
    may appear twice in ONE split under different wrappers (a GSM8K problem bare and inside a
    Bespoke-Stratos system prompt): that is a different request of a different kind.
    """
    split_of_text: dict[str, str] = {}
    seen: set[tuple[str, Any]] = set()
    kept, dropped = [], 0
    for item in items:
        first_split = split_of_text.setdefault(item.text, item.split)
        key = (item.family, item.identity)
        if first_split != item.split or key in seen:
            dropped += 1
            continue
        seen.add(key)
        kept.append(item)
    return kept, dropped


def _load(root: Path | None) -> Corpus:
    table = SplitTable()
    base = SAMPLE_DIR if root is None else root
    if not base.is_dir():
        raise FileNotFoundError(f"corpus root {base} is not a directory")
    raw: list[CorpusItem] = []
    for source in SOURCES:
        rel = source.sample_path if root is None and source.sample_path else source.path
        path = base / rel
        if not path.is_file():
            if root is None and not source.shipped:
                continue  # not licensed for shipping: only the full development corpora have it
            raise FileNotFoundError(f"corpus source {source.name!r}: {path} is missing")
        raw.extend(source.read(path))
    raw.extend(read_cot_reveal())
    raw.extend(read_hard_negatives())
    for item in raw:
        if item.kind not in KINDS:
            raise ValueError(f"source {item.source!r} produced unknown kind {item.kind!r}")
    split_of: dict[str, str] = {}
    items = []
    for i in raw:
        split = split_of.get(i.family)
        if split is None:
            split = split_of[i.family] = table.split(i.family, i.source)
        # positional construction: dataclasses.replace costs seconds over the full corpora
        items.append(
            CorpusItem(
                i.text, i.system, i.messages, i.answer, i.source, i.family, i.kind, split, i.lang, i.group
            )
        )
    items, dropped = _dedupe(items)
    return Corpus(items, base, dropped)


_CACHE: dict[Path | None, Corpus] = {}
_LOCK = threading.Lock()


def load_corpus(root: Path | None = None) -> Corpus:
    """The corpus at `root` (the development corpora, e.g. ../shared/data), or the shipped sample.

    Parsed once per process and root; later calls return the same object.
    """
    key = None if root is None else Path(root).resolve()
    with _LOCK:
        corpus = _CACHE.get(key)
        if corpus is None:
            corpus = _load(key)
            _CACHE[key] = corpus
        return corpus
