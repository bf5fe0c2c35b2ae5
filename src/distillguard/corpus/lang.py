"""A cheap language guess for corpus rows (script counts, then stop words for Latin-script text).

The corpora carry no language field except oasst's multilingual file, and the corpus only needs to
tell English from "other" reliably and name the common languages; a model would be overkill.
"""

from __future__ import annotations

import re

_LETTER = re.compile(r"[^\W\d_]", re.UNICODE)
_KANA = re.compile(r"[\u3040-\u30ff]")
_HAN = re.compile(r"[\u4e00-\u9fff]")
_HANGUL = re.compile(r"[\uac00-\ud7af]")
_CYRILLIC = re.compile(r"[\u0400-\u04ff]")
_UKRAINIAN = re.compile(r"[іїєґІЇЄҐ]")
_ARABIC = re.compile(r"[\u0600-\u06ff]")
_THAI = re.compile(r"[\u0e00-\u0e7f]")
_HEBREW = re.compile(r"[\u0590-\u05ff]")
_DEVANAGARI = re.compile(r"[\u0900-\u097f]")
_GREEK = re.compile(r"[\u0370-\u03ff]")
_VIETNAMESE = re.compile(r"[ạảấầẩẫậắằẳẵặẹẻẽếềểễệỉịọỏốồổỗộớờởỡợụủứừửữựỳỵỷỹđơư]")
_WORD = re.compile(r"[a-zà-ÿ]+")

# Frequent function words that are rare in the other languages of the list.
_STOP_WORDS: dict[str, frozenset[str]] = {
    "en": frozenset(
        [
            "the",
            "and",
            "is",
            "are",
            "you",
            "what",
            "how",
            "this",
            "that",
            "with",
            "for",
            "of",
            "to",
            "in",
            "it",
            "can",
        ]
    ),
    "es": frozenset(
        [
            "el",
            "la",
            "los",
            "las",
            "que",
            "es",
            "por",
            "para",
            "con",
            "una",
            "del",
            "como",
            "pero",
            "más",
            "qué",
            "cómo",
            "está",
        ]
    ),
    "fr": frozenset(
        [
            "le",
            "la",
            "les",
            "des",
            "est",
            "une",
            "pour",
            "avec",
            "que",
            "qui",
            "dans",
            "sur",
            "pas",
            "vous",
            "je",
            "du",
            "au",
        ]
    ),
    "de": frozenset(
        [
            "der",
            "die",
            "das",
            "und",
            "ist",
            "nicht",
            "ein",
            "eine",
            "mit",
            "für",
            "ich",
            "sie",
            "wie",
            "auf",
            "auch",
            "zu",
        ]
    ),
    "pt": frozenset(
        [
            "o",
            "os",
            "as",
            "um",
            "uma",
            "que",
            "não",
            "com",
            "para",
            "por",
            "como",
            "é",
            "são",
            "você",
            "do",
            "da",
        ]
    ),
    "it": frozenset(
        [
            "il",
            "lo",
            "gli",
            "che",
            "non",
            "una",
            "per",
            "con",
            "sono",
            "come",
            "della",
            "del",
            "di",
            "è",
            "mi",
        ]
    ),
}

# one pass over the words: word -> the languages it is a stop word of
_STOP_INDEX: dict[str, tuple[str, ...]] = {}
for _code, _words in _STOP_WORDS.items():
    for _word in _words:
        _STOP_INDEX[_word] = (*_STOP_INDEX.get(_word, ()), _code)

_SCRIPT_LANGS = ((_HANGUL, "ko"), (_ARABIC, "ar"), (_THAI, "th"), (_HEBREW, "he"), (_DEVANAGARI, "hi"))


def guess_lang(text: str) -> str:
    """ISO 639-1 code of the dominant language of `text`; "en" when nothing else is clear.

    >>> guess_lang("How do I bake bread?"), guess_lang("¿Cómo puedo ser feliz? Estoy triste por la lluvia."), guess_lang("你好，请问")
    ('en', 'es', 'zh')
    """
    sample = text[:2000]
    if sample.isascii():
        return _latin_lang(sample.lower())
    letters = len(_LETTER.findall(sample))
    if letters == 0:
        return "en"
    threshold = max(1, int(0.3 * letters))
    han = len(_HAN.findall(sample))
    kana = len(_KANA.findall(sample))
    if kana and kana + han >= threshold:
        return "ja"
    if han >= threshold:
        return "zh"
    for pattern, code in _SCRIPT_LANGS:
        if len(pattern.findall(sample)) >= threshold:
            return code
    if len(_CYRILLIC.findall(sample)) >= threshold:
        return "uk" if _UKRAINIAN.search(sample) else "ru"
    if len(_GREEK.findall(sample)) >= threshold:
        return "el"
    lowered = sample.lower()
    if len(_VIETNAMESE.findall(lowered)) >= 3:
        return "vi"
    return _latin_lang(lowered)


def _latin_lang(lowered: str) -> str:
    hits = dict.fromkeys(_STOP_WORDS, 0)
    for word in _WORD.findall(lowered, 0, 1500):
        for code in _STOP_INDEX.get(word, ()):
            hits[code] += 1
    best = max(hits, key=lambda code: (hits[code], code == "en"))
    if best != "en" and hits[best] >= 2 and hits[best] > hits["en"]:
        return best
    return "en"
