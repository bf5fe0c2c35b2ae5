"""Rebuild the small permissively licensed corpus sample that ships in the package.

`distillguard sim build-sample --corpus ../shared/data` runs this. It keeps the layout of the
development corpora, copies only sources marked `shipped` (Apache-2.0, MIT, CC0), keeps evenly
spaced rows so every family of a file is represented, and writes ORIGIN.md with each file's origin
and licence.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from distillguard.corpus.corpus import AUXILIARY_FILES, SAMPLE_DIR, SOURCES, Source

ORIGIN_HEADER = """# Origin and licence of the shipped corpus sample

These files are small subsets of public corpora, copied from the project's development corpora
(`../shared/data`, see its README) by `distillguard sim build-sample --corpus ../shared/data`.
Only permissively licensed files are shipped (Apache-2.0, MIT, CC0-1.0); ShareGPT, Alpaca and
WizardLM data and anything that embeds them are never shipped. Rows are kept evenly spaced so each
template family of a file is represented. The reveal-request phrasings (`../cot_reveal.yaml`) and
the labelled hard negatives (`../hard_negatives.yaml`) are the project's own text (Apache-2.0).

| file | rows | source | licence |
|---|---|---|---|
"""


def _evenly_spaced(rows: list[str], keep: int | None) -> list[str]:
    if keep is None or len(rows) <= keep:
        return rows
    return [rows[(i * len(rows)) // keep] for i in range(keep)]


def _rows(path: Path) -> list[str]:
    # split on "\n" only: some rows hold U+2028, which str.splitlines would break on
    return [line for line in path.read_text(encoding="utf-8").split("\n") if line.strip()]


def _sample_source(source: Source, corpus_root: Path, out: Path) -> tuple[str, int]:
    src = corpus_root / source.path
    if not src.is_file():
        raise FileNotFoundError(f"corpus source {source.name!r}: {src} is missing")
    rel = source.sample_path or source.path
    dest = out / rel
    dest.parent.mkdir(parents=True, exist_ok=True)
    if src.suffix == ".parquet":
        import pyarrow.parquet as pq

        table_rows = pq.read_table(src).to_pylist()
        lines = [json.dumps(row, ensure_ascii=False, sort_keys=True) for row in table_rows]
    elif src.suffix == ".csv":
        shutil.copyfile(src, dest)
        return rel, sum(1 for _ in dest.open(encoding="utf-8")) - 1
    else:
        lines = _rows(src)
    if source.name == "ultrafeedback_completion_reconstructed":
        # the ShareGPT subset embeds ShareGPT prompts, whose licence is unclear
        lines = [line for line in lines if str(json.loads(line).get("subset", "")).startswith("flan")]
    lines = _evenly_spaced(lines, source.sample_rows)
    dest.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return rel, len(lines)


def build_sample(corpus_root: Path, out: Path = SAMPLE_DIR) -> list[tuple[str, int, str]]:
    """Write the sample under `out` (the package's sample folder by default); returns (file, rows, licence)."""
    if not corpus_root.is_dir():
        raise FileNotFoundError(f"corpus root {corpus_root} is not a directory")
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    written: list[tuple[str, int, str, str]] = []
    for source in SOURCES:
        if source.shipped:
            rel, count = _sample_source(source, corpus_root, out)
            written.append((rel, count, source.path, source.licence))
    for rel, licence in AUXILIARY_FILES:
        dest = out / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        if rel.endswith(".jsonl"):
            lines = _evenly_spaced(_rows(corpus_root / rel), 150)
            dest.write_text("\n".join(lines) + "\n", encoding="utf-8")
            written.append((rel, len(lines), rel, licence))
        else:
            shutil.copyfile(corpus_root / rel, dest)
            written.append((rel, 1, rel, licence))
    table = "".join(
        f"| `{rel}` | {count} | `{origin}` | {licence} |\n" for rel, count, origin, licence in written
    )
    upstream = _upstream_notes(corpus_root)
    (out / "ORIGIN.md").write_text(ORIGIN_HEADER + table + upstream, encoding="utf-8")
    return [(rel, count, licence) for rel, count, _, licence in written]


def _upstream_notes(corpus_root: Path) -> str:
    return (
        "\nUpstream projects: Open-Assistant/oasst-model-eval (Apache-2.0); f/awesome-chatgpt-prompts "
        "(CC0-1.0); lmarena/arena-hard-auto (Apache-2.0); lm-sys/FastChat MT-bench and Vicuna questions "
        "(Apache-2.0); yizhongw/self-instruct user-oriented instructions (Apache-2.0); anthropics/hh-rlhf "
        "(MIT); AUGMXNT/deccp (Apache-2.0); openai/grade-school-math GSM8K (MIT); google-research FLAN v2 "
        "CoT data (Apache-2.0); AIME24/AMC23/Minerva math test sets as redistributed by MIT/Apache-2.0 "
        "evaluation repositories; huggingface/open-r1 and bespokelabs Bespoke-Stratos prompt formats "
        "(Apache-2.0); bespokelabs curator s1K-style test fixture (Apache-2.0); Open-Orca system messages "
        "(MIT) and Intel/orca_dpo_pairs (Apache-2.0); camel-ai/camel (Apache-2.0); magpie-align/magpie "
        "(MIT); tatsu-lab/alpaca_eval (Apache-2.0); OpenBMB/UltraFeedback (MIT). Full licence texts are "
        "in those projects; the development corpora README records the exact revisions "
        f"({corpus_root.name}/README.md).\n"
    )
