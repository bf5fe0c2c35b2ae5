"""Removes credentials (API keys, tokens, passwords, cookies, private keys) from logged calls before
anything is written, so a secret never reaches the store, a rejects file or a log line.

Two rules, applied anywhere in the nesting (request and response bodies, `headers` maps, LiteLLM
metadata, list items):
- by name: a mapping key that names a credential (`Authorization`, `api_key`, `x-auth-token`,
  `aws.access.key.id`, ...) is deleted with its value;
- by value: a known credential shape inside any string (`sk-...` keys, `AKIA...` ids, JWTs,
  `Bearer ...`, URL userinfo and key-like query parameters, PEM private keys, `api_key=...`
  assignments) is replaced in place by `[REDACTED:<kind>]`, keeping the rest of the text (a prompt
  that quotes a key is still a prompt).

Why our own pattern table rather than `detect-secrets` (the maintained scanner on PyPI): it runs
~25 plugins of Python regexes plus entropy filters per line (hundreds of microseconds, too slow
for the gateway's request path), misses most shapes an LLM API sees (`sk-proj-`/`sk-ant-`, `hf_`,
`AIza`, URL query keys) and reports findings rather than redacting. The table below borrows its
and gitleaks' rules (each row names its source) and runs them through Hyperscan, which tests
every rule in one pass: a raw line with no hint of a credential costs ~1 us.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from distillguard.events.model import CallEvent

hyperscan: Any
try:
    import hyperscan
except ImportError:  # no wheel for this platform: the `re` fallback gives the same answers, slower
    hyperscan = None

REDACTED = "[REDACTED:{kind}]"

# ---- by name -----------------------------------------------------------------------------------
# Names are compared after lower-casing and dropping '-', '_', '.' and spaces, so `api_key`,
# `apiKey`, `X-Api-Key` and `x.api.key` are one name. A name is a credential when it equals or
# ends with one of these (`user_api_key`, `hf_token`, `aws.access.key.id`, `secret_access_key`).
SECRET_NAME_ENDINGS: tuple[str, ...] = (
    "authorization",
    "apikey",
    "apikeys",
    "token",  # access, refresh, id, session, auth, bearer, api, hf_, github_ ... tokens
    "secret",  # client_secret, webhook_secret
    "secretkey",
    "accesskey",
    "accesskeyid",
    "privatekey",
    "masterkey",
    "signingkey",
    "encryptionkey",
    "subscriptionkey",  # Ocp-Apim-Subscription-Key
    "password",
    "passwd",
    "passphrase",
    "cookie",
    "cookies",
    "credential",
    "credentials",
)
SECRET_NAMES: frozenset[str] = frozenset({"auth", "pwd"})
# Names ending in `token` that are tokenizer settings, token counts or pagination cursors, not
# credentials (`eos_token`, `max_token`, `next_page_token`); deleting them would lose the request.
NOT_SECRET_NAMES: frozenset[str] = frozenset(
    f"{prefix}token"
    for prefix in (
        "eos", "bos", "pad", "unk", "sep", "cls", "mask", "stop", "start", "end", "special", "image",
        "audio", "video", "max", "min", "num", "first", "last", "prompt", "completion",
        "next", "nextpage", "page", "continuation",
    )
)  # fmt: skip


def _normal(key: str) -> str:
    return key.lower().replace("-", "").replace("_", "").replace(".", "").replace(" ", "")


def is_secret_key(key: str) -> bool:
    """Whether a mapping key names a credential.

    >>> [is_secret_key(k) for k in ("Authorization", "apiKey", "x-auth-token", "aws.access.key.id")]
    [True, True, True, True]
    >>> [is_secret_key(k) for k in ("max_tokens", "key_id", "user_api_key_hash", "eos_token")]
    [False, False, False, False]
    """
    name = _normal(key)
    if name in NOT_SECRET_NAMES:
        return False
    return name in SECRET_NAMES or name.endswith(SECRET_NAME_ENDINGS)


# ---- by value ----------------------------------------------------------------------------------
Validator = Callable[[re.Match[str]], bool]


@dataclass(frozen=True)
class SecretShape:
    """One credential shape. `pattern` is the rule on decoded text; the part replaced is its
    `secret` group (or the whole match). `hint` is what the Hyperscan prefilter looks for, in
    raw JSON text as well as in decoded strings: it must match wherever `pattern` does (a wider
    net is fine), and it defaults to `pattern` when the pattern has no whitespace or quote that
    JSON would escape. `validate` rejects matches a regex cannot (a Basic value that does not
    decode to `user:password`)."""

    kind: str
    pattern: str
    derived_from: str
    ignore_case: bool = False
    hint: str | None = None
    validate: Validator | None = None

    def compiled(self) -> re.Pattern[str]:
        # ASCII: `\s` and case-folding then mean what they mean to Hyperscan on the UTF-8 bytes,
        # so a hint can never miss what the pattern would take
        return re.compile(self.pattern, (re.IGNORECASE if self.ignore_case else 0) | re.DOTALL | re.ASCII)


def _whole_value_or(test: Callable[[str], bool]) -> Validator:
    """A value that is nothing but `Scheme credential` is a header value, whatever the credential
    looks like; inside prose the credential itself must look like one."""

    def check(match: re.Match[str]) -> bool:
        return match.group(0) == match.string.strip() or test(match.group("secret"))

    return check


def _looks_like_token(text: str) -> bool:
    """Random-looking: a digit or a token symbol, or several capitals among small letters. Prose
    after "Bearer" ("bonds", "Instruments") is none of these."""
    if any(c.isdigit() or c in "._~+/-" for c in text):
        return True
    return sum(c.isupper() for c in text) >= 2 and any(c.islower() for c in text)


def _is_basic_credential(token: str) -> bool:
    try:
        decoded = base64.b64decode(token, validate=True)
    except (binascii.Error, ValueError):
        return False
    return b":" in decoded and decoded.isascii() and decoded.decode("ascii").isprintable()


def _query_name_is_secret(match: re.Match[str]) -> bool:
    return _normal(match.group("name")) in QUERY_SECRET_NAMES or is_secret_key(match.group("name"))


def _mixed_case(match: re.Match[str]) -> bool:
    secret = match.group("secret")
    return any(c.isupper() for c in secret) and any(c.islower() for c in secret)


# Query parameter names that carry a credential in URLs, beyond what `is_secret_key` says.
QUERY_SECRET_NAMES: frozenset[str] = frozenset(
    {"key", "sig", "signature", "xamzsignature", "xamzcredential", "xgoogsignature", "xgoogcredential", "jwt"}
)

_TOKEN_END = r"(?![A-Za-z0-9_-])"
_NOT_REDACTED = r"(?!\[REDACTED:)"  # a value already replaced is not taken (and counted) twice
_IN_STRING_NAMES = (
    r"authorization|api[-_.]?keys?|api[-_.]?token|auth[-_.]?token|access[-_.]?token|refresh[-_.]?token"
    r"|session[-_.]?token|client[-_.]?secret|secret[-_.]?access[-_.]?key|secret[-_.]?key"
    r"|access[-_.]?key(?:[-_.]?id)?|private[-_.]?key|password|passwd|passphrase|[-_.]token|[-_.]secret"
)

# Order matters where shapes overlap: the more specific kind runs first (a JWT inside
# `Bearer eyJ...` is redacted as a JWT, then the Bearer rule finds nothing left to take).
SHAPES: tuple[SecretShape, ...] = (
    SecretShape(
        kind="private_key",
        pattern=r"-----BEGIN[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----"
        r"(?:.*?-----END[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----|.*)",
        hint=r"-----BEGIN[A-Z0-9 ]{0,40}PRIVATE KEY",
        derived_from="gitleaks rule private-key; detect-secrets PrivateKeyDetector",
    ),
    SecretShape(
        kind="jwt",
        pattern=r"(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]*",
        derived_from="RFC 7519 compact form (base64url header starting '{\"'); gitleaks rule jwt",
    ),
    SecretShape(
        kind="anthropic_key",
        pattern=r"(?<![A-Za-z0-9_-])sk-ant-[A-Za-z0-9_-]{20,}",
        derived_from="gitleaks rules anthropic-api-key, anthropic-admin-api-key (sk-ant-api03-, sk-ant-admin01-)",
    ),
    SecretShape(
        kind="openai_key",
        # sk-, sk-proj-, sk-svcacct-, sk-admin-, and the same shape at OpenRouter (sk-or-v1-) and
        # DeepSeek; a digit is required so hyphenated prose ("sk-learn-style-...") is left alone.
        pattern=r"(?<![A-Za-z0-9_-])sk-(?=[A-Za-z0-9_-]*[0-9])[A-Za-z0-9_-]{20,}",
        hint=r"sk-[A-Za-z0-9_-]*[0-9]",  # Hyperscan's prefilter mode would drop the lookahead
        derived_from="gitleaks rule openai-api-key, widened past its T3BlbkFJ marker; detect-secrets OpenAIDetector",
    ),
    SecretShape(
        kind="stripe_key",
        pattern=r"(?<![A-Za-z0-9_])(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,}",
        derived_from="gitleaks rule stripe-access-token; detect-secrets StripeDetector",
    ),
    SecretShape(
        kind="google_api_key",
        pattern=r"AIza[0-9A-Za-z_-]{35}",
        derived_from="gitleaks rule gcp-api-key",
    ),
    SecretShape(
        kind="huggingface_token",
        pattern=r"(?<![A-Za-z0-9_])hf_[A-Za-z0-9]{30,}" + _TOKEN_END,
        derived_from="gitleaks rule huggingface-access-token (hf_ + 34 letters)",
    ),
    SecretShape(
        kind="github_token",
        pattern=r"(?<![A-Za-z0-9_])(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,})",
        derived_from="gitleaks rules github-pat, github-oauth, github-app-token, github-fine-grained-pat",
    ),
    SecretShape(
        kind="gitlab_token",
        pattern=r"(?<![A-Za-z0-9_])glpat-[A-Za-z0-9_-]{20,}",
        derived_from="gitleaks rule gitlab-pat",
    ),
    SecretShape(
        kind="provider_key",
        pattern=r"(?<![A-Za-z0-9_-])(?:gsk_|xai-|pplx-|r8_|npm_|pypi-AgE)[A-Za-z0-9_-]{30,}",
        derived_from="gitleaks rules (groq, xai, perplexity, replicate, npm-access-token, pypi-upload-token)",
    ),
    SecretShape(
        kind="slack_token",
        pattern=r"(?<![A-Za-z0-9])xox[abposr]-[A-Za-z0-9-]{10,}",
        derived_from="gitleaks rules slack-bot-token, slack-user-token, slack-app-token; detect-secrets SlackDetector",
    ),
    SecretShape(
        kind="aws_access_key_id",
        pattern=r"(?<![A-Za-z0-9])(?:A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA)[A-Z2-7]{16}(?![A-Za-z0-9])",
        derived_from="gitleaks rule aws-access-token; detect-secrets AWSKeyDetector",
    ),
    SecretShape(
        kind="url_userinfo",
        # scheme://user:password@host (and scheme://token@host): the whole userinfo goes
        pattern=r"(?<![A-Za-z0-9+.-])[A-Za-z][A-Za-z0-9+.-]{0,15}://"
        + _NOT_REDACTED
        + r"(?P<secret>[^\s/?#@\"'<>\\]+)@",
        derived_from="RFC 3986 section 3.2.1 (userinfo; 'user:password' is deprecated for this reason)",
    ),
    SecretShape(
        kind="url_query_secret",
        pattern=r"[?&;](?P<name>[A-Za-z0-9_.-]{1,64})=" + _NOT_REDACTED + r"(?P<secret>[^&#\s\"'<>\\]+)",
        hint=r"[?&;][A-Za-z0-9_.-]{0,64}(?:key|token|sig|secret|signature|passw|credential|auth|jwt)"
        r"[A-Za-z0-9_.-]{0,64}=",
        ignore_case=True,
        validate=_query_name_is_secret,
        derived_from="?key= (Google), ?api_key=, ?access_token= (RFC 6750 section 2.3), &sig= (Azure SAS), "
        "X-Amz-Signature/X-Amz-Credential (AWS SigV4 presigned URLs)",
    ),
    SecretShape(
        kind="cookie",
        pattern=r"(?<![A-Za-z0-9-])(?:set-)?cookie\s*:\s*"
        + _NOT_REDACTED
        + r"(?P<secret>[^\s\"\\][^\r\n\"\\]*)",
        hint=r"cookie(?:\\?[\"'])?(?:\s|\\[nrt])*:",
        ignore_case=True,
        derived_from="RFC 6265 Cookie / Set-Cookie header lines",
    ),
    SecretShape(
        kind="assigned_secret",
        # `Authorization: Bearer x`, `api_key = "x"`, `OPENAI_API_KEY=x`, `"password": "x"`
        # inside any text (a header dump, a config file or JSON quoted in a prompt)
        pattern=rf"(?<![A-Za-z0-9])[A-Za-z0-9_.-]{{0,40}}?(?:{_IN_STRING_NAMES})[\"']?\s*[:=]\s*"
        r"(?:(?:bearer|basic|token|digest|negotiate)\s+)?(?!(?:bearer|basic|token|digest|negotiate)\s)"
        rf"(?:\"{_NOT_REDACTED}(?P<secret_dq>[^\"\r\n]{{1,512}})\"|'{_NOT_REDACTED}(?P<secret_sq>[^'\r\n]{{1,512}})'"
        rf"|{_NOT_REDACTED}(?P<secret>[^\s\"'&;,\\]+))",
        hint=rf"(?:{_IN_STRING_NAMES})(?:\\?[\"'])?(?:\s|\\[nrt])*[:=]",
        ignore_case=True,
        derived_from="detect-secrets KeywordDetector (name = value in code and config)",
    ),
    SecretShape(
        kind="bearer_token",
        pattern=r"(?<![A-Za-z0-9])bearer\s+(?P<secret>[A-Za-z0-9._~+/-]{8,}=*)",
        hint=r"bearer",
        ignore_case=True,
        validate=_whole_value_or(_looks_like_token),
        derived_from="RFC 6750 section 2.1 (b64token)",
    ),
    SecretShape(
        kind="basic_credentials",
        pattern=r"(?<![A-Za-z0-9])basic\s+(?P<secret>[A-Za-z0-9+/]{6,}={0,2})(?![A-Za-z0-9+/=])",
        hint=r"basic(?:\s|\\[nrt])+[A-Za-z0-9+/]{6,}",
        ignore_case=True,
        validate=_whole_value_or(_is_basic_credential),
        derived_from="RFC 7617 (base64 of user-id ':' password); detect-secrets BasicAuthDetector",
    ),
)

# A 40-character secret access key has no prefix of its own; it is taken only from a call that
# also holds an access key id (the two are pasted together: env files, config, CLI output).
AWS_SECRET_KEY = SecretShape(
    kind="aws_secret_access_key",
    pattern=r"(?<![A-Za-z0-9/+=])(?P<secret>[A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=])",
    validate=_mixed_case,  # a lower-case hex SHA-1 has the same length and is not a key
    derived_from="gitleaks rule aws-secret-access-key (only next to an access key id)",
)

# What makes a raw JSON line worth walking besides a shape: a JSON escape can hide any name or
# shape (`\u0061pi_key`, `https:\/\/user:pw@`), so lines with one are always walked.
_NAME_HINT = (
    "(?:"
    + "|".join("[-_. ]*".join(re.escape(c) for c in name) for name in (*SECRET_NAME_ENDINGS, *SECRET_NAMES))
    + ")(?:\\\\?[\"'])?(?:\\s|\\\\[nrt])*[:=]"
)
_ESCAPE_HINT = r"\\[u/]"


class _Scanner:
    """Which of a set of hint patterns occur in a text: one Hyperscan pass, or `re` without it."""

    def __init__(self, hints: list[tuple[str, bool]], use_hyperscan: bool = True) -> None:
        self.python = [re.compile(h.encode(), re.IGNORECASE if caseless else 0) for h, caseless in hints]
        self.database: Any = None
        if hyperscan is not None and use_hyperscan:
            self.database = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
            base = hyperscan.HS_FLAG_SINGLEMATCH | hyperscan.HS_FLAG_PREFILTER | hyperscan.HS_FLAG_DOTALL
            self.database.compile(
                expressions=[h.encode() for h, _ in hints],
                ids=list(range(len(hints))),
                elements=len(hints),
                flags=[base | (hyperscan.HS_FLAG_CASELESS if caseless else 0) for _, caseless in hints],
            )

    def any(self, data: bytes) -> bool:
        if self.database is None:
            return any(p.search(data) for p in self.python)
        try:
            self.database.scan(data, match_event_handler=_stop)
        except hyperscan.ScanTerminated:
            return True
        return False

    def which(self, data: bytes) -> list[int]:
        if self.database is None:
            return [i for i, p in enumerate(self.python) if p.search(data)]
        found: list[int] = []
        self.database.scan(data, match_event_handler=_collect, context=found)
        return sorted(found)


def _stop(*_match: Any) -> bool:
    return True  # ends the scan; hyperscan signals it with ScanTerminated


def _collect(shape: int, _start: int, _end: int, _flags: int, found: list[int]) -> None:
    found.append(shape)


def _hint_of(shape: SecretShape) -> tuple[str, bool]:
    return (shape.hint or shape.pattern), shape.ignore_case


def _line_scanner() -> _Scanner:
    hints = [_hint_of(s) for s in SHAPES] + [(_NAME_HINT, True), (_ESCAPE_HINT, False)]
    return _Scanner(hints)


_LINE_SCANNER = _line_scanner()
_SHAPE_SCANNER = _Scanner([_hint_of(s) for s in SHAPES])
_SHAPE_PATTERNS = [s.compiled() for s in SHAPES]
_AWS_SECRET_PATTERN = AWS_SECRET_KEY.compiled()
_AWS_KEY_ID = next(i for i, s in enumerate(SHAPES) if s.kind == "aws_access_key_id")


def may_hold_secret(raw: bytes) -> bool:
    """False only when the raw JSON text certainly holds no credential name or value, so the walk
    of `strip_credentials` can be skipped (most lines of a large log hold none).

    >>> may_hold_secret(b'{"key_id": "k1", "request": {"max_tokens": 5}}')
    False
    >>> may_hold_secret(b'{"headers": {"X-Api-Key": "abc"}}')
    True
    >>> may_hold_secret(b'{"content": "my key is sk-proj-a1b2c3d4e5f6g7h8i9j0k1"}')
    True
    """
    return _LINE_SCANNER.any(raw)


def _replacement(shape: SecretShape) -> Callable[[re.Match[str]], str]:
    marker = REDACTED.format(kind=shape.kind)

    def replace(match: re.Match[str]) -> str:
        if shape.validate is not None and not shape.validate(match):
            return match.group(0)
        for name, value in match.groupdict().items():
            if name.startswith("secret") and value is not None:
                start, end = match.start(name) - match.start(), match.end(name) - match.start()
                whole = match.group(0)
                return whole[:start] + marker + whole[end:]
        return marker

    return replace


_REPLACEMENTS = [_replacement(s) for s in SHAPES]
_AWS_SECRET_REPLACEMENT = _replacement(AWS_SECRET_KEY)


class _Found:
    """What one walk saw that decides a second rule: an AWS access key id anywhere in the call."""

    aws_key_id = False


def _redact(text: str, found: _Found | None = None) -> tuple[str, int]:
    data = text.encode("utf-8", "surrogatepass")
    hits = _SHAPE_SCANNER.which(data)
    if not hits:
        return text, 0
    removed = 0
    for index in hits:
        text, count = _sub_counting(_SHAPE_PATTERNS[index], _REPLACEMENTS[index], text)
        removed += count
        if count and index == _AWS_KEY_ID and found is not None:
            found.aws_key_id = True
    return text, removed


def _sub_counting(
    pattern: re.Pattern[str], replace: Callable[[re.Match[str]], str], text: str
) -> tuple[str, int]:
    changed = 0

    def counted(match: re.Match[str]) -> str:
        nonlocal changed
        out = replace(match)
        changed += out != match.group(0)
        return out

    return pattern.sub(counted, text), changed


def redact_text(text: str) -> tuple[str, int]:
    """`text` with every credential shape replaced by `[REDACTED:<kind>]`, and how many were.

    >>> redact_text("curl -H 'Authorization: Bearer abc123def456' https://u:pw@api.example/v1?key=zz")
    ("curl -H 'Authorization: Bearer [REDACTED:assigned_secret]' https://[REDACTED:url_userinfo]@api.example/v1?key=[REDACTED:url_query_secret]", 3)
    """
    found = _Found()
    text, removed = _redact(text, found)
    if found.aws_key_id:
        text, more = _sub_counting(_AWS_SECRET_PATTERN, _AWS_SECRET_REPLACEMENT, text)
        removed += more
    return text, removed


def _walk(value: Any, found: _Found) -> int:
    removed = 0
    if isinstance(value, dict):
        for key in list(value):
            item = value[key]
            if isinstance(key, str) and (_names_secret(key, value) or _redact(key)[1]):
                del value[key]
                removed += 1
            elif isinstance(item, str):
                text, count = _redact(item, found)
                if count:
                    value[key] = text
                    removed += count
            elif isinstance(item, dict | list):
                removed += _walk(item, found)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            if isinstance(item, str):
                text, count = _redact(item, found)
                if count:
                    value[index] = text
                    removed += count
            elif isinstance(item, dict | list):
                removed += _walk(item, found)
    return removed


def _names_secret(key: str, holder: dict[Any, Any]) -> bool:
    # An OpenAI logprobs entry names its text `token` ({"token", "logprob", "bytes", ...}).
    return is_secret_key(key) and not ("logprob" in holder and _normal(key) == "token")


def _walk_aws_secret(value: Any) -> int:
    removed = 0
    items: Iterable[tuple[Any, Any]] = (
        value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    )
    for key, item in list(items):
        if isinstance(item, str):
            text, count = _sub_counting(_AWS_SECRET_PATTERN, _AWS_SECRET_REPLACEMENT, item)
            if count:
                value[key] = text
                removed += count
        elif isinstance(item, dict | list):
            removed += _walk_aws_secret(item)
    return removed


def strip_credentials(value: Any) -> int:
    """Remove credentials from decoded JSON in place; returns how many were removed.

    Keys naming a credential are deleted with their value; credential shapes inside any string
    (mapping values, list items) are replaced by `[REDACTED:<kind>]`.

    >>> body = {"model": "m", "headers": {"Authorization": "Bearer sk-abcdefgh1234"}, "api_key": "x",
    ...         "messages": [{"role": "user", "content": "why does AKIAIOSFODNN7EXAMPLE fail?"}]}
    >>> strip_credentials(body), body
    (3, {'model': 'm', 'headers': {}, 'messages': [{'role': 'user', 'content': 'why does [REDACTED:aws_access_key_id] fail?'}]})
    """
    found = _Found()
    removed = _walk(value, found)
    if found.aws_key_id:
        removed += _walk_aws_secret(value)
    return removed


def _identity(value: str | None) -> str | None:
    """An identifier (account, key, end user) that holds a credential keeps its identity as the
    credential's SHA-256, so calls still group by it without the secret being kept."""
    if value is None or not _redact(value)[1]:
        return value
    return "sha256:" + hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()


def _text_field(value: str | None) -> str | None:
    return value if value is None else redact_text(value)[0]


def strip_event_credentials(event: CallEvent) -> int:
    """Remove credentials from every part of a call a log can put one in: the request and
    response bodies, identifiers (a log that names the account by its API key), the endpoint
    (`?key=...`) and the client's descriptive fields. Returns how many were removed."""
    removed = strip_credentials(event.request)
    if event.response is not None:
        removed += strip_credentials(event.response)
    for field in ("event_id", "account_id", "key_id", "end_user"):
        before = getattr(event, field)
        after = _identity(before)
        if after != before:
            setattr(event, field, after)
            removed += 1
    client = event.client
    for holder, field in ((event, "endpoint"), (client, "user_agent"), (client, "router"), (client, "ip")):
        before = getattr(holder, field)
        after = _text_field(before)
        if after != before:
            setattr(holder, field, after)
            removed += 1
    return removed
