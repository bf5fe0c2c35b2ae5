"""The review UI's password policy, applied wherever a password is set (`cases add-user`, and any
later change, which goes through `CaseStore.add_user`).

zxcvbn (Dropbox's strength estimator, ported to Python) rather than a home-made rule set: it knows
the common-password lists, dictionary words, keyboard walks, repeats, dates and l33t substitutions,
and it counts the user's own name as a known word. Composition rules ("one digit, one symbol") are
what NIST SP 800-63B advises against; length plus a guessability estimate is what it advises for.
"""

from __future__ import annotations

from zxcvbn import zxcvbn

MIN_LENGTH = 12
MIN_SCORE = 3  # zxcvbn's 0-4 scale; 3: "safely unguessable" against an offline attack on slow hashes
MAX_LENGTH = 1024  # argon2 takes any length; this only bounds the work a request can cause
_SCORED_CHARS = 128  # zxcvbn's time grows with length; a longer password is scored on its start


class WeakPassword(ValueError):
    """A password the policy refuses; the message says why and never contains the password."""


def check_password(password: str, username: str) -> None:
    """Raise WeakPassword saying what is wrong with `password` for `username` (never echoing it)."""
    if len(password) < MIN_LENGTH:
        raise WeakPassword(f"password: at least {MIN_LENGTH} characters are required")
    if len(password) > MAX_LENGTH:
        raise WeakPassword(f"password: at most {MAX_LENGTH} characters")
    if username and password.casefold() == username.casefold():
        raise WeakPassword("password: must not be the user name")
    scored = password[:_SCORED_CHARS]
    result = zxcvbn(scored, user_inputs=[username, "distillguard"], max_length=_SCORED_CHARS)
    if result["score"] < MIN_SCORE:
        feedback = result["feedback"]
        why = " ".join(part for part in [feedback["warning"], *feedback["suggestions"]] if part)
        raise WeakPassword(
            f"password: too easy to guess (strength {result['score']} of 4, {MIN_SCORE} required)"
            + (f": {why}" if why else "; use a longer passphrase of uncommon words")
        )
