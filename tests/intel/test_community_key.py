"""The community key: loaded from a file or one variable, refused when unsafe, never shown."""

from __future__ import annotations

import base64
import logging
from pathlib import Path

import pytest

from distillguard.intel.community_key import KEY_ENV, KEYS_FILE_ENV, CommunityKeyError, CommunityKeys

SECRET = base64.b64encode(b"s" * 32).decode()
OTHER = base64.b64encode(b"o" * 32).decode()


def write(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


def test_file_with_two_keys_one_current(tmp_path: Path) -> None:
    path = write(
        tmp_path / "k.yaml",
        f"keys:\n  - id: new-2026\n    secret: {SECRET}\n    current: true\n  - id: old-2025\n    secret: {OTHER}\n",
    )
    keys = CommunityKeys.load(path)
    assert keys.current == "new-2026" and keys.ids == ["new-2026", "old-2025"]
    # the same value under two keys: two unrelated hashes; matching tries every key held
    assert keys.digest("payment", "pm_1") != keys.digest("payment", "pm_1", "old-2025")


@pytest.mark.parametrize(
    ("text", "mode", "message"),
    [
        (f"keys:\n  - id: a\n    secret: {SECRET}\n", 0o644, "readable by others"),
        ("keys: []\n", 0o600, "non-empty list"),
        ("keys: [", 0o600, "not a YAML key file"),
        (f"keys:\n  - id: 'a b'\n    secret: {SECRET}\n", 0o600, r"keys\[0\]\.id"),
        ("keys:\n  - id: a\n    secret: c2hvcnQ=\n", 0o600, r"keys\[0\]\.secret: at least 32"),
        ("keys:\n  - id: a\n    secret: '***'\n", 0o600, r"keys\[0\]\.secret: not valid base64"),
        (f"keys:\n  - id: a\n    secret: {SECRET}\n  - id: a\n    secret: {OTHER}\n", 0o600, "appears twice"),
        (
            f"keys:\n  - id: a\n    secret: {SECRET}\n  - id: b\n    secret: {OTHER}\n",
            0o600,
            "exactly one key",
        ),
        (f"keys:\n  - id: a\n    secret: {SECRET}\n    colour: red\n", 0o600, "expected an object"),
    ],
)
def test_bad_key_files_name_the_field(tmp_path: Path, text: str, mode: int, message: str) -> None:
    with pytest.raises(CommunityKeyError, match=message) as raised:
        CommunityKeys.load(write(tmp_path / "k.yaml", text, mode))
    assert SECRET not in str(raised.value) and OTHER not in str(raised.value)


def test_environment(tmp_path: Path) -> None:
    assert CommunityKeys.from_env({}) is None
    keys = CommunityKeys.from_env({KEY_ENV: f"inline-1:{SECRET}"})
    assert keys is not None and keys.current == "inline-1"
    path = write(tmp_path / "k.yaml", f"keys:\n  - id: f\n    secret: {SECRET}\n")
    from_file = CommunityKeys.from_env({KEYS_FILE_ENV: str(path), KEY_ENV: f"x:{OTHER}"})
    assert from_file is not None and from_file.ids == ["f"]  # the file wins
    with pytest.raises(CommunityKeyError, match="ID:BASE64"):
        CommunityKeys.from_env({KEY_ENV: SECRET})


def test_secret_never_shown(caplog: pytest.LogCaptureFixture) -> None:
    keys = CommunityKeys({"k": b"s" * 32}, "k")
    caplog.set_level(logging.DEBUG)
    logging.getLogger("test").info("keys: %s %r", keys, keys)
    for shown in (repr(keys), str(keys), caplog.text):
        assert "sss" not in shown and SECRET not in shown


@pytest.mark.parametrize(
    ("kind", "a", "b"),
    [
        ("email_domain", "Forge-Mail.Example.", "forge-mail.example"),
        ("email_domain", "someone@forge-mail.example", "forge-mail.example"),
        ("email_domain", "bücher.example", "xn--bcher-kva.example"),
        ("signup_ip", "2001:DB8:0:0:0:0:0:1", "2001:db8::1"),
        ("signup_ip", " 203.0.113.7 ", "203.0.113.7"),
        ("payment", " pm_1 ", "pm_1"),
    ],
)
def test_one_spelling_per_value(kind: str, a: str, b: str) -> None:
    keys = CommunityKeys({"k": b"s" * 32}, "k")
    assert keys.digest(kind, a) == keys.digest(kind, b)


def test_kind_separates_hashes() -> None:
    keys = CommunityKeys({"k": b"s" * 32}, "k")
    assert keys.digest("payment", "x.example") != keys.digest("email_domain", "x.example")
    assert len(keys.digest("payment", "x")) == 64
