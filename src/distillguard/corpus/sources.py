"""Readers for each file of the development corpora (`../shared/data`), one per source.

Each reader turns one file into CorpusItems with their source, family and kind (the split comes
later from split.yaml). The shipped sample mirrors the same layout, so one set of readers serves
both. Buckets of a big benign source are taken by a stable hash of a grouping key (a conversation,
a topic cluster), never of the row, so the turns of one conversation stay in one split.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distillguard.corpus.items import CorpusItem
from distillguard.corpus.lang import guess_lang


def stable_bucket(key: str, buckets: int) -> int:
    """A bucket in [0, buckets) that depends only on `key` (never on PYTHONHASHSEED)."""
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % buckets


def _jsonl(path: Path) -> Iterator[Any]:
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}:{number}: not valid JSON ({error})") from error


def _lines(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text(encoding="utf-8").split("\n") if line.strip()]


def _field(row: Any, name: str, path: Path) -> Any:
    if not isinstance(row, dict) or name not in row:
        raise ValueError(f"{path}: a row lacks the field {name!r}")
    return row[name]


def _split_messages(messages: list[dict[str, str]]) -> tuple[str, str, tuple[dict[str, str], ...] | None]:
    """(system, last user turn, full list when there is more than system + user)."""
    system = "\n".join(m["content"] for m in messages if m["role"] in ("system", "developer"))
    users = [m["content"] for m in messages if m["role"] == "user"]
    text = users[-1] if users else ""
    others = [m for m in messages if m["role"] not in ("system", "developer")]
    full = tuple(dict(m) for m in messages) if len(others) > 1 else None
    return system, text, full


# --- benign -----------------------------------------------------------------------------------

SHAREGPT_BUCKETS = 10


def read_sharegpt_turns(path: Path) -> list[CorpusItem]:
    """Every human turn; one conversation (conv_id prefix) is one group and stays in one bucket."""
    items = []
    for row in _jsonl(path):
        conv = str(_field(row, "conv_id", path))
        text = str(_field(row, "text", path))
        if not text.strip():
            continue
        # ShareGPT splits long conversations into conv_id "_0", "_1", ...: one bucket per conversation
        conversation = conv.rsplit("_", 1)[0]
        bucket = stable_bucket(conversation, SHAREGPT_BUCKETS)
        lang = guess_lang(text)
        kind, prefix = ("chat", "chat") if lang == "en" else ("non_english", "nonen")
        items.append(
            CorpusItem(
                text=text,
                source="sharegpt",
                family=f"{prefix}:sharegpt_b{bucket}",
                kind=kind,
                lang=lang,
                group=f"sharegpt:{conversation}",
            )
        )
    return items


_OASST_FILE = re.compile(r"(result_\d\d|prompt_lottery_en_250|en_100_message)")


def read_oasst_en(path: Path) -> list[CorpusItem]:
    """Open-Assistant English prompts; a family is one of the upstream sample files."""
    items = []
    for row in _jsonl(path):
        if row.get("synthetic"):
            continue  # the few model-written rows are not what people sent
        match = _OASST_FILE.search(str(_field(row, "source", path)))
        if match is None:
            raise ValueError(f"{path}: unknown oasst source file {row['source']!r}")
        name = {"prompt_lottery_en_250": "lottery", "en_100_message": "manual"}.get(
            match.group(1), match.group(1)
        )
        text = str(_field(row, "text", path))
        items.append(CorpusItem(text=text, source="oasst_en", family=f"chat:oasst_{name}", kind="chat"))
    return items


# The multilingual file holds 5 prompts per language in this order (checked against the text).
_OASST_LANGS = ("en", "es", "ru", "de", "fr", "uk", "it", "vi", "zh", "ko", "ja", "th")


def read_oasst_multilingual(path: Path) -> list[CorpusItem]:
    rows = [str(row) for row in _jsonl(path)]
    items = []
    for index, text in enumerate(rows):
        lang = _OASST_LANGS[index // 5] if index // 5 < len(_OASST_LANGS) else guess_lang(text)
        if lang == "en":
            items.append(
                CorpusItem(text=text, source="oasst_multilingual", family="chat:oasst_ml_en", kind="chat")
            )
        else:
            items.append(
                CorpusItem(
                    text=text,
                    source="oasst_multilingual",
                    family=f"nonen:oasst_{lang}",
                    kind="non_english",
                    lang=lang,
                )
            )
    return items


def read_awesome_prompts(path: Path) -> list[CorpusItem]:
    items = []
    with path.open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            act, prompt = row.get("act"), row.get("prompt")
            if not act or not prompt:
                raise ValueError(f"{path}: a row lacks 'act' or 'prompt'")
            family = f"roleplay:awesome_b{stable_bucket(act, 3)}"
            items.append(
                CorpusItem(
                    text=prompt, source="awesome_chatgpt_prompts", family=family, kind="roleplay_system"
                )
            )
    return items


def read_arena_hard(path: Path) -> list[CorpusItem]:
    """Arena-hard user prompts; a family is a bucket of upstream topic clusters."""
    items = []
    for row in _jsonl(path):
        cluster = str(_field(row, "cluster", path))
        text = str(_field(row, "prompt", path))
        family = f"chat:arena_hard_b{stable_bucket(cluster, 5)}"
        items.append(CorpusItem(text=text, source="arena_hard", family=family, kind="chat", group=cluster))
    return items


def _turns_reader(source: str) -> Callable[[Path], list[CorpusItem]]:
    """MT-bench / Vicuna-bench: each turn is a question; turns of one question form a group."""

    def read(path: Path) -> list[CorpusItem]:
        items = []
        for row in _jsonl(path):
            qid = _field(row, "question_id", path)
            for turn in _field(row, "turns", path):
                items.append(
                    CorpusItem(
                        text=str(turn),
                        source=source,
                        family=f"eval:{source}",
                        kind="eval_question",
                        group=f"{source}:{qid}",
                    )
                )
        return items

    return read


def read_wizardlm_testset(path: Path) -> list[CorpusItem]:
    return [
        CorpusItem(
            text=str(_field(row, "Instruction", path)),
            source="wizardlm_testset",
            family="eval:wizardlm_testset",
            kind="eval_question",
        )
        for row in _jsonl(path)
    ]


def read_self_instruct_user_oriented(path: Path) -> list[CorpusItem]:
    """Instruction plus each instance input, joined the way the self-instruct evaluation sent them."""
    items = []
    for row in _jsonl(path):
        instruction = str(_field(row, "instruction", path))
        for instance in _field(row, "instances", path):
            given = str(instance.get("input", "")).strip()
            text = f"{instruction}\n\n{given}" if given else instruction
            items.append(
                CorpusItem(
                    text=text,
                    answer=str(instance.get("output") or "") or None,
                    source="self_instruct_user_oriented",
                    family="eval:self_instruct_user_oriented",
                    kind="eval_question",
                    group=str(row.get("id")),
                )
            )
    return items


def read_hh_harmless(path: Path) -> list[CorpusItem]:
    return [
        CorpusItem(
            text=(text := str(_field(row, "text", path))),
            source="hh_rlhf_harmless",
            family=f"redteam:hh_harmless_b{stable_bucket(text, 5)}",
            kind="redteam",
        )
        for row in _jsonl(path)
    ]


def _deccp_reader(name: str) -> Callable[[Path], list[CorpusItem]]:
    def read(path: Path) -> list[CorpusItem]:
        items = []
        for text in _lines(path):
            lang = guess_lang(text)
            if lang == "en":
                items.append(
                    CorpusItem(text=text, source=f"deccp_{name}", family=f"chat:deccp_{name}", kind="chat")
                )
            else:
                items.append(
                    CorpusItem(
                        text=text,
                        source=f"deccp_{name}",
                        family=f"nonen:deccp_{name}",
                        kind="non_english",
                        lang=lang,
                    )
                )
        return items

    return read


# --- bare questions ---------------------------------------------------------------------------


def _gsm8k_reader(source: str) -> Callable[[Path], list[CorpusItem]]:
    def read(path: Path) -> list[CorpusItem]:
        return [
            CorpusItem(
                text=str(_field(row, "question", path)),
                answer=str(_field(row, "answer", path)),
                source=source,
                family=f"bare:{source}",
                kind="bare_question",
            )
            for row in _jsonl(path)
        ]

    return read


def _flan_reader(name: str) -> Callable[[Path], list[CorpusItem]]:
    """FLAN v2 CoT train TSV: question, answer, rationale (newlines written as a literal backslash-n)."""

    def read(path: Path) -> list[CorpusItem]:
        items = []
        for number, line in enumerate(path.read_text(encoding="utf-8").split("\n"), 1):
            if not line.strip():
                continue
            parts = line.split("\t")
            if len(parts) != 3:
                raise ValueError(f"{path}:{number}: expected 3 tab-separated fields, found {len(parts)}")
            question, answer, rationale = (p.replace("\\n", "\n").strip() for p in parts)
            items.append(
                CorpusItem(
                    text=question,
                    answer=f"{rationale} So the answer is {answer}.",
                    source=f"flan_{name}",
                    family=f"bare:flan_{name}",
                    kind="bare_question",
                )
            )
        return items

    return read


def _math_eval_reader(source: str) -> Callable[[Path], list[CorpusItem]]:
    def read(path: Path) -> list[CorpusItem]:
        items = []
        for row in _jsonl(path):
            problem = row.get("problem") or row.get("question")
            if not problem:
                raise ValueError(f"{path}: a row lacks 'problem'")
            solution = row.get("solution") or (str(row["answer"]) if "answer" in row else None)
            items.append(
                CorpusItem(
                    text=str(problem),
                    answer=solution,
                    source=source,
                    family=f"bare:{source}",
                    kind="bare_question",
                )
            )
        return items

    return read


def read_alpaca_noinput(path: Path) -> list[CorpusItem]:
    return [
        CorpusItem(text=text, source="alpaca_noinput", family="bare:alpaca_noinput", kind="bare_question")
        for text in _lines(path)
    ]


def read_seed_tasks(path: Path) -> list[CorpusItem]:
    items = []
    for row in _jsonl(path):
        instruction = str(_field(row, "instruction", path))
        for instance in _field(row, "instances", path):
            given = str(instance.get("input", "")).strip()
            items.append(
                CorpusItem(
                    text=f"{instruction}\n\n{given}" if given else instruction,
                    answer=str(instance.get("output") or "") or None,
                    source="self_instruct_seed",
                    family="bare:self_instruct_seed",
                    kind="bare_question",
                )
            )
    return items


# --- chain-of-thought requests ----------------------------------------------------------------


def read_r1_reconstructed(path: Path) -> list[CorpusItem]:
    items = []
    for row in _jsonl(path):
        style = str(_field(row, "style", path))
        system, text, full = _split_messages(_field(row, "messages", path))
        items.append(
            CorpusItem(
                text=text,
                system=system,
                messages=full,
                source="r1_reconstructed",
                family=f"cot:{style}",
                kind="cot_request",
                group=str(row.get("problem_source")),
            )
        )
    return items


def read_s1k_fixture(path: Path) -> list[CorpusItem]:
    """s1K-style rows with a real reasoning trace (the sample stores them as JSON lines)."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        rows = pq.read_table(path).to_pylist()
    else:
        rows = list(_jsonl(path))
    items = []
    for row in rows:
        trace = row.get("gemini_thinking_trajectory") or ""
        attempt = row.get("gemini_attempt") or ""
        items.append(
            CorpusItem(
                text=str(row["question"]),
                answer=f"<think>\n{trace}\n</think>\n\n{attempt}" if trace else attempt or None,
                source="s1k_fixture",
                family="cot:s1k",
                kind="cot_request",
            )
        )
    return items


def _orca_family(system: str, prompts: dict[str, int]) -> tuple[str, str]:
    """(kind, family) of an Orca-style request: one family per system message; none means bare."""
    if not system.strip():
        return "bare_question", ""
    index = prompts.get(system.strip())
    return "cot_request", f"cot:orca_sys{index:02d}" if index is not None else "cot:orca_other"


ORCA_SYSTEM_FILE = "orca_system_prompts_16.json"


def orca_system_prompts(folder: Path) -> dict[str, int]:
    """The 16 Orca system messages (text -> 1-based index) from the file next to the Orca rows."""
    path = folder / ORCA_SYSTEM_FILE
    rows = json.loads(path.read_text(encoding="utf-8"))
    return {str(_field(r, "system_prompt", path)).strip(): int(_field(r, "index_1based", path)) for r in rows}


def read_orca_reconstructed(path: Path) -> list[CorpusItem]:
    prompts = orca_system_prompts(path.parent)
    items = []
    for row in _jsonl(path):
        system = str(_field(row, "system", path))
        flan = str(_field(row, "flan_cot_source", path))
        kind, family = _orca_family(system, prompts)
        items.append(
            CorpusItem(
                text=str(_field(row, "user", path)),
                system=system,
                source="orca_reconstructed",
                # without a system message it is a bare FLAN question: same family as its FLAN file
                family=family or f"bare:flan_{flan}",
                kind=kind,
                group=flan,
            )
        )
    return items


def read_openorca(path: Path) -> list[CorpusItem]:
    """Real OpenOrca rows: Orca system message + FLAN task + the GPT-4 answer."""
    prompts = orca_system_prompts(path.parent)
    items = []
    for row in _jsonl(path):
        system = str(_field(row, "system", path))
        kind, family = _orca_family(system, prompts)
        items.append(
            CorpusItem(
                text=str(_field(row, "user", path)),
                system=system,
                answer=str(row.get("gpt4_response") or "") or None,
                source="openorca",
                family=family or "bare:openorca_nosys",
                kind=kind,
            )
        )
    return items


# --- generation requests ----------------------------------------------------------------------


def _prompt_reader(
    source: str, family: Callable[[dict[str, Any]], str]
) -> Callable[[Path], list[CorpusItem]]:
    def read(path: Path) -> list[CorpusItem]:
        return [
            CorpusItem(
                text=str(_field(row, "prompt", path)),
                source=source,
                family=family(row),
                kind="generation",
            )
            for row in _jsonl(path)
        ]

    return read


_MAGPIE_VENDORS = {"meta-llama": "llama", "Qwen": "qwen", "google": "gemma", "microsoft": "phi"}


def read_magpie(path: Path) -> list[CorpusItem]:
    """Magpie pre-query templates: the whole prompt is a chat-template prefix with an empty user turn."""
    items = []
    for row in _jsonl(path):
        model = str(_field(row, "model", path))
        vendor = _MAGPIE_VENDORS.get(model.split("/")[0], "other")
        for key in ("pre_query_template", "pre_query_template_with_system_prompt"):
            template = row.get(key)
            if template:
                items.append(
                    CorpusItem(
                        text=str(template),
                        source="magpie_templates",
                        family=f"gen:magpie_{vendor}",
                        kind="generation",
                        group=model,
                    )
                )
    return items


# --- grading and completion collection --------------------------------------------------------

_PLACEHOLDER = re.compile(r"(?<!\{)\{([A-Za-z_][A-Za-z0-9_]*)\}(?!\})")
JUDGE_FILLS_PER_TEMPLATE = 14


@dataclass(frozen=True, slots=True)
class JudgedPair:
    """A real question with a preferred and a rejected real answer (orca_dpo_pairs)."""

    question: str
    chosen: str
    rejected: str


def read_judged_pairs(path: Path) -> list[JudgedPair]:
    pairs = []
    for row in _jsonl(path):
        messages = _field(row, "input", path)["messages"]
        _, question, _ = _split_messages(messages)
        chosen = _field(row, "preferred_output", path)[0]["content"]
        rejected = _field(row, "non_preferred_output", path)[0]["content"]
        pairs.append(JudgedPair(question=question, chosen=chosen, rejected=rejected))
    return pairs


def _first_paragraph(text: str) -> str:
    return text.strip().split("\n\n", 1)[0]


def _fill_values(pair: JudgedPair, follow_up: JudgedPair) -> dict[str, str]:
    """What each template placeholder means, filled from real question/answer pairs."""
    chosen, rejected = pair.chosen, pair.rejected
    return {
        "question": pair.question,
        "QUESTION": pair.question,
        "instruction": pair.question,
        "question_1": pair.question,
        "question_2": follow_up.question,
        "answer": chosen,
        "answer_a": chosen,
        "answer_b": rejected,
        "ANSWER_A": chosen,
        "ANSWER_B": rejected,
        "answer_1": chosen,
        "answer_2": follow_up.chosen,
        "answer_a_1": chosen,
        "answer_b_1": rejected,
        "answer_a_2": follow_up.chosen,
        "answer_b_2": follow_up.rejected,
        "ref_answer_1": chosen,
        "ref_answer_2": follow_up.chosen,
        "output_1": chosen,
        "output_2": rejected,
        "text_1": chosen,
        "text_2": rejected,
        "text_3": _first_paragraph(chosen),
        "text_4": _first_paragraph(rejected),
        "world_knowledge": "No additional world knowledge for reference.",
    }


def _fill(template: str, values: dict[str, str]) -> str:
    # str.format would choke on the JSON braces many judge templates contain
    return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), template)


def fill_judge_templates(path: Path, pairs: list[JudgedPair]) -> list[CorpusItem]:
    """Each real judge template filled with real question/answer pairs, the way a grader sends it."""
    if not pairs:
        raise ValueError(f"{path}: no judged pairs to fill the judge templates with")
    items = []
    for t_index, row in enumerate(_jsonl(path)):
        family = f"judge:{_field(row, 'family', path)}"
        name = str(_field(row, "name", path))
        for k in range(JUDGE_FILLS_PER_TEMPLATE):
            # spread fills over the pool so templates do not all see the same items
            pair = pairs[(t_index * 7 + k * 13) % len(pairs)]
            follow_up = pairs[(t_index * 7 + k * 13 + 1) % len(pairs)]
            values = _fill_values(pair, follow_up)
            if row.get("messages_template"):
                messages = [
                    {"role": m["role"], "content": _fill(m["content"], values)}
                    for m in row["messages_template"]
                ]
                system, text, full = _split_messages(messages)
            else:
                system = _fill(str(row.get("system") or ""), values)
                text = _fill(str(row.get("user_template") or ""), values)
                full = None
            if not text.strip():
                continue
            items.append(
                CorpusItem(
                    text=text,
                    system=system,
                    messages=full,
                    source="judge_templates",
                    family=family,
                    kind="grading",
                    group=name,
                )
            )
    return items


def _messages_reader(
    source: str, kind: str, family: Callable[[dict[str, Any]], str]
) -> Callable[[Path], list[CorpusItem]]:
    def read(path: Path) -> list[CorpusItem]:
        items = []
        for row in _jsonl(path):
            system, text, full = _split_messages(_field(row, "messages", path))
            items.append(
                CorpusItem(
                    text=text, system=system, messages=full, source=source, family=family(row), kind=kind
                )
            )
        return items

    return read
