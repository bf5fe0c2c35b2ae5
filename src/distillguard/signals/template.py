"""template: a fingerprint of the prompt with its variable parts removed.

One template sent with 10,000 fillings gives one fingerprint, while bare distinct questions keep
distinct fingerprints; the account stage counts fingerprints to measure template concentration.
What is removed: code blocks, quoted spans, URLs, numbers, the content under slot headers
("Question:", "## Instruction", "#Given Prompt#:") and long lines. The score says how much of the
prompt was variable (0 for a bare question, near 1 for a thin instruction around a large filling).
"""

from __future__ import annotations

import hashlib
import re
from collections import OrderedDict

import pyarrow as pa

from distillguard.events.call_view import CallView
from distillguard.signals.base import Signal, SignalResult, TextMemo, distinct_codes
from distillguard.signals.patterns import HEAD_CHARS, TAIL_CHARS

# Removed before looking at lines: spans whose content is a filling wherever they appear (code
# blocks, quoted spans, URLs). Each alternative is reached through its first character, matched
# once up front, because an alternation of lookbehinds and quoted spans tried at every position
# costs ~5x more on long prompts.
_QUOTED = (
    r"(?<=`)``.*?(?:```|$)"  # a code block (an unterminated one runs to the end)
    r'|(?<=")""[\s\S]*?(?:"""|$)'
    r'|(?<=")[^"\n]{0,400}"'
    r"|(?<=')(?<!\w')[^'\n]{1,200}'(?!\w)"  # not an apostrophe (don't)
    r"|(?<=“)[^”]{0,400}”|(?<=«)[^»]{0,400}»|(?<=「)[^」]{0,400}」|(?<=`)[^`\n]{1,200}`"
)
_VARIABLE_SPANS = re.compile(r"[`\"'“«「h](?:" + _QUOTED + r"|(?<=h)ttps?://\S+)", re.DOTALL)
# The same matches in a text without "://" (a URL needs it; the other spans never start at an "h"),
# where the engine need not stop at every "h" (~30% of the cost of the spans on real prompts).
_QUOTED_SPANS = re.compile(r"[`\"'“«「](?:" + _QUOTED + ")", re.DOTALL)
# A number: `\d+(?:[.,]\d+)*`, written with a first digit apart, because a pattern that starts with a
# character class (not a repeat) lets the regex engine skip to the digits (~1.5x faster).
_NUMBER = re.compile(r"\d\d*(?:[.,]\d+)*")
# In ASCII text, the digits read as "0" first give the same matches (a number reads only digit or
# not), and every digit is inside one, so none of the "0"s is left: a pattern that starts with one
# character is searched for as a literal: ~4x faster on real prompts than the scan for `\d`.
_DIGITS_AS_ZERO = bytes.maketrans(b"123456789", b"000000000")
_ZEROS_NUMBER = re.compile(rb"00*(?:[.,]0+)*")
# Names inserted into a template ("... that Social Media Manager can assist Gamer ..."): runs of
# capitalised words that do not start a sentence. Written capital first, then what precedes it and
# "not a lone I" as lookbehinds (the same matches as `(?<=[a-z,;] )(?!I\b)[A-Z]...`): a pattern that
# starts with a character class lets the regex engine skip to the capitals, ~2x faster.
_INSERTED_NAME = re.compile(r"[A-Z](?<=[a-z,;] [A-Z])(?!(?<=I)\b)[\w-]*(?: (?:of |and |the )?[A-Z][\w-]*)*")
# Slot headers. A strong one ("## Instruction", "[The Start of Assistant A's Answer]", "#Given
# Prompt#:") opens a slot anywhere; a line ending in a colon opens one only from the frame, because
# fillings (problem statements, pasted text) contain such lines too; inside a slot a short key
# ("Output:") is still part of the frame. A "line ending in a colon" is checked inline.
_STRONG_HEADER = re.compile(r"^(?:#{1,6}\s.*|\[[^\]]{1,80}\]|#[^#\n]{1,40}#\s*:?|[-=*_#]{3,})$")
_HEADER_STARTS = "#[-=*_"  # the first characters a strong header can have
_BLANKS = re.compile(r"[ \t\f\v]+")
_KEY_HEADER = re.compile(r"^[^:()<>=\[\]{}]{1,30}:$")
# "Question: what is ..." keeps its key and drops its value.
_INLINE_SLOT = re.compile(r"^([^:\n]{1,30}):\s+\S.*$")
_NOTHING_FIXED = re.compile(r"^[\W#\x01]*$")
LONG_LINE = 200  # a single line this long is a filling (a pasted paragraph, a problem statement)
FINGERPRINT_BYTES = 8
FINGERPRINT_MEMO = 65_536  # distinct (system prompt, prompt) pairs whose fingerprint a batch reader remembers
# ... and the first characters of their frame it keeps with it (`fingerprints_and_frames` gives at most these)
FRAME_MEMO_CHARS = 400


def _cut_outside_fences(text: str) -> str:
    """Head and tail of a long text. A code block or triple-quoted span (a judge request's long
    answers) open at the end of the head is closed there and reopened at the start of the tail, so
    the cut cannot flip what is quoted."""
    if len(text) <= HEAD_CHARS + TAIL_CHARS:
        return text
    head, tail = text[:HEAD_CHARS], text[-TAIL_CHARS:]
    before_tail = text[: len(text) - TAIL_CHARS]
    close = "".join(fence for fence in ('"""', "```") if head.count(fence) % 2 == 1)
    reopen = "".join(fence for fence in ('"""', "```") if before_tail.count(fence) % 2 == 1)
    return head + close + "\n…\n" + reopen + tail


def collapse_blanks(text: str) -> str:
    """`_BLANKS.sub(" ", text)`: each run of spaces, tabs, form and vertical feeds as one space.
    With str.replace, ~10x faster than the regex, which stops at every single space between words."""
    for blank in "\t\f\v":
        if blank in text:
            text = text.replace(blank, " ")
    while "  " in text:
        text = text.replace("  ", " ")
    return text


def _without_numbers(text: str) -> str:
    """`_NUMBER.sub("\\x01", text)`: each number as one \\x01."""
    if text.isascii():
        zeros = text.encode("ascii").translate(_DIGITS_AS_ZERO)
        return _ZEROS_NUMBER.sub(b"\x01", zeros).decode("ascii")
    return _NUMBER.sub("\x01", text)


def _skeleton(text: str) -> tuple[str, int]:
    """The fixed frame of `text` and the number of characters removed as variable parts."""
    original = len(text)
    text = _cut_outside_fences(text)
    text = (_VARIABLE_SPANS if "://" in text else _QUOTED_SPANS).sub(" \x01 ", text)
    text = _without_numbers(_INSERTED_NAME.sub("\x01", text))
    # whitespace and case once for the whole text, not per line
    text = collapse_blanks(text).lower()
    kept: list[str] = []
    in_slot = False
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        # Most lines start with a letter: neither a strong header nor free of word characters.
        first = line[0]
        strong = first in _HEADER_STARTS and _STRONG_HEADER.match(line) is not None
        if not strong and not first.isalnum() and _NOTHING_FIXED.match(line):
            continue
        colon = line.endswith(":")
        if strong or (not in_slot and colon and len(line) <= LONG_LINE + 1):
            kept.append(line)
            in_slot = True
        elif in_slot:
            if colon and _KEY_HEADER.match(line):
                kept.append(line)
        elif len(line) < LONG_LINE:
            inline = _INLINE_SLOT.match(line) if ":" in line else None
            kept.append(inline.group(1) + ":" if inline else line)
    frame = "\n".join(kept)
    removed = max(0, original - len(frame.replace("\x01", "")))
    return frame, removed


# Pure in the text, and templated traffic repeats system prompts and whole prompts: a bounded
# memo spares the regexes on repeats (the scan and the gateway both see them). The scan asks twice
# for the prompts of an account's new templates (fingerprint, then `catalog.template_frame`), a
# batch of 8,192 calls apart: 4,096 entries kept almost none of those repeats, 16,384 no more,
# 32,768 (a few tens of MB) cut the scan's measure columns by ~15% on the default preset.
# Prompts of at most MEMO_TEXT_CHARS characters are remembered (long ones are rare and would fill it).
skeleton = TextMemo(_skeleton, maxsize=1 << 15)


class Template(Signal):
    name = "template"
    version = "1"
    description = (
        "A fingerprint of the prompt (and system prompt) with variable parts removed: numbers, quoted "
        "spans, code blocks, content under slot headers, long lines. Score: the share of the prompt "
        "that was variable."
    )
    known_false_positives = (
        "different people typing the same short phrase ('translate this:') share a fingerprint",
        "products that wrap every user question in their own template (one fingerprint per product)",
    )
    reads = "input"
    inline = True
    reads_columns = ("system_prompt", "prompt")

    def __init__(self) -> None:
        # (system prompt, prompt) -> (fingerprint, frame): the frame is what a template's frame
        # measure keeps (`catalog.template_frame`), cut to `frame_chars` when asked for
        self._fingerprints: OrderedDict[tuple[object, ...], tuple[str, str]] = OrderedDict()

    def forget(self) -> None:
        self._fingerprints.clear()

    def fingerprints(self, batch: pa.RecordBatch | pa.Table) -> pa.Array:
        """The fingerprint of every row of a record batch, each distinct (system prompt, prompt) once
        and remembered across batches (`FINGERPRINT_MEMO` of them). The distinct pairs are read as
        strings, without a view each (`distinct_views` would build ~40 per 100 rows, ~20% of the cost)."""
        return self.fingerprints_and_frames(batch, 0)[0]

    def fingerprints_and_frames(
        self, batch: pa.RecordBatch | pa.Table, frame_chars: int
    ) -> tuple[pa.Array, pa.Array | None]:
        """`fingerprints`, and each row's frame (`_fingerprint_and_share`'s, which depends on the
        prompt alone) cut to ``frame_chars`` (None for 0): the frame measure reads it, and would
        otherwise parse the prompt again where this memo remembers the pair but the skeleton's
        memo no longer does."""
        if frame_chars > FRAME_MEMO_CHARS:
            raise ValueError(f"frames are remembered to {FRAME_MEMO_CHARS} characters, not {frame_chars}")
        absent = [name for name in self.reads_columns if name not in batch.schema.names]
        if absent:
            raise KeyError(f"the batch lacks the columns {absent} a signal reads")
        codes, first = distinct_codes([batch.column(name) for name in self.reads_columns])
        rows = pa.array(first)
        systems = batch.column("system_prompt").take(rows).to_pylist()
        prompts = batch.column("prompt").take(rows).to_pylist()
        memo = self._fingerprints
        out, frames = [], []
        for key in zip(systems, prompts, strict=True):
            found = memo.get(key)
            if found is None:
                fingerprint, _, frame = _fingerprint_and_share(*key)
                found = memo[key] = (fingerprint, frame[:FRAME_MEMO_CHARS])
            else:
                memo.move_to_end(key)
            out.append(found[0])
            if frame_chars:
                frames.append(found[1][:frame_chars])
        while len(memo) > FINGERPRINT_MEMO:  # least recently used first out
            memo.popitem(last=False)
        at = pa.array(codes)
        framed = pa.array(frames, pa.string()).take(at) if frame_chars else None
        return pa.array(out, pa.string()).take(at), framed

    def fingerprint(self, call: CallView) -> str:
        """A short stable hex string; equal for calls built from the same template."""
        return _fingerprint_and_share(call.system_prompt, call.prompt)[0]

    def analyze(self, call: CallView) -> SignalResult:
        fingerprint, share, frame = _fingerprint_and_share(call.system_prompt, call.prompt)
        return SignalResult(
            signal=self.name,
            score=round(share, 4),
            detail=f"template {fingerprint}; {share:.0%} of the prompt is variable",
            matched=[f"fingerprint={fingerprint}", f"frame: {frame[:80]!r}"],
        )


def _fingerprint_and_share(system_prompt: str, prompt: str) -> tuple[str, float, str]:
    """A call's fingerprint, variable share and frame, from its system prompt and prompt."""
    frame, removed = skeleton(prompt)
    if not frame.replace("\x01", "").strip():
        # nothing fixed is left (one long paragraph): the prompt is its own template
        frame = " ".join(prompt.split()).lower()
    system = skeleton(system_prompt)[0] if system_prompt else ""
    digest = hashlib.blake2b(
        (system + "\x00" + frame).encode("utf-8", "surrogatepass"), digest_size=FINGERPRINT_BYTES
    )
    share = removed / len(prompt) if prompt else 0.0
    return digest.hexdigest(), min(1.0, share), frame
