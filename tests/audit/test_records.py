"""The run's files: the append-only answers log survives a torn last line; messages are rebuilt
from chunks as a client would show them."""

from __future__ import annotations

from pathlib import Path

from distillguard.audit.records import ANSWERS, Answer, AnswerLog, Attempt, Chunk, messages_of, read_answers


def answer(key: str, status: str = "complete") -> Answer:
    return Answer(
        key=key,
        item=key,
        lang="en",
        topic="t",
        prompt="?",
        status=status,
        completed_at="",
        attempts=[
            Attempt(
                n=1,
                started_at="",
                status=status,
                elapsed_s=0.1,
                chunks=[Chunk(t=0.05, kind="delta", content="hi")],
            )
        ],
    )


def test_a_torn_last_line_is_reported_and_the_next_record_starts_clean(tmp_path: Path) -> None:
    log = AnswerLog(tmp_path / ANSWERS)
    log.write(answer("a"))
    log.close()
    with (tmp_path / ANSWERS).open("ab") as handle:
        handle.write(b'{"key": "b", "ite')  # killed mid-write
    log = AnswerLog(tmp_path / ANSWERS)
    log.write(answer("c"))
    log.write(answer("a", status="timeout"))  # a newer record for the same question wins
    log.close()
    files = read_answers(tmp_path)
    assert sorted(files.answers) == ["a", "c"] and files.answers["a"].status == "timeout"
    assert len(files.problems) == 1 and files.problems[0].startswith(
        f"{tmp_path / ANSWERS}:2: not a complete answer record"
    )


def test_messages_as_a_client_shows_them() -> None:
    chunks = [
        Chunk(t=0.1, kind="delta", content="Hello "),
        Chunk(t=0.2, kind="delta", content="world", reasoning="thinking"),
        Chunk(t=0.3, kind="error", raw="x"),
        Chunk(t=0.4, kind="delta", message=1, content="Sorry"),
        Chunk(t=0.5, kind="message", message=1, content="Sorry, I can't."),
        Chunk(t=0.6, kind="delta", message=2, refusal="No."),
    ]
    messages = messages_of(Attempt(n=1, started_at="", status="complete", elapsed_s=1, chunks=chunks))
    assert [(m.index, m.text, m.refusal, m.first_t, m.last_t) for m in messages] == [
        (0, "Hello world", "", 0.1, 0.2),
        (1, "Sorry, I can't.", "", 0.4, 0.5),
        (2, "", "No.", 0.6, 0.6),
    ]
