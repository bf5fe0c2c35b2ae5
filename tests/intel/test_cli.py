"""`distillguard intel` commands in-process: a new key file, a clear error without a key, export ->
import -> list -> sweep between two case stores, with the counts each prints."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from distillguard.cases.store import CaseStore
from distillguard.enforcement.state import ban_from_json
from distillguard.intel.cli import intel
from tests.intel.conftest import KEYS, PAYMENT, actor_case

SECRET = base64.b64encode(KEYS.secrets["k1"]).decode()


def run(*args: str, env: dict[str, str] | None = None, ok: bool = True) -> str:
    result = CliRunner().invoke(intel, list(args), env=env or {}, catch_exceptions=False)
    assert (result.exit_code == 0) is ok, result.output
    return result.output


def test_new_key_is_owner_only_and_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "community.yaml"
    out = run("new-key", "--id", "community-1", "--out", str(path))
    assert "community-1" in out and stat.S_IMODE(path.stat().st_mode) == 0o600
    secret = path.read_text().split("secret: ")[1].split()[0]
    assert secret not in out
    assert "exists" in run("new-key", "--id", "community-2", "--out", str(path), ok=False)
    assert "1-64 characters" in run("new-key", "--id", "bad id", "--out", str(tmp_path / "x.yaml"), ok=False)


def test_no_key_is_a_clear_error(tmp_path: Path) -> None:
    out = run(
        "export",
        "--db",
        str(tmp_path / "a.db"),
        "--deployment",
        "lab-a",
        "--out",
        str(tmp_path / "b.json"),
        ok=False,
    )
    assert "no community key" in out and "DISTILLGUARD_INTEL_KEYS_FILE" in out


def test_export_import_list_sweep(tmp_path: Path) -> None:
    env = {"DISTILLGUARD_INTEL_KEY": f"k1:{SECRET}"}
    a_db, b_db = str(tmp_path / "a.db"), str(tmp_path / "b.db")
    a = CaseStore.open(a_db)
    a.upsert(actor_case())
    a.decide(1, "ivy", "ban", "three accounts, one card, judge harvesting", {})
    a.close()
    bundle = tmp_path / "bundle.json"
    out = run("export", "--db", a_db, "--deployment", "lab-a", "--out", str(bundle), env=env)
    assert (
        out.startswith("1 actors, 5 indicators (key k1)")
        and "skipped 1: tls_asn: shared with more than 2" in out
    )
    assert json.loads(bundle.read_text())["type"] == "bundle"
    bans = tmp_path / "b-bans.jsonl"
    imported = run("import", str(bundle), "--peer", "lab-a", "--db", b_db, "--bans", str(bans), env=env)
    assert "stored 11 new" in imported and "rejected: none" in imported and "5 written" in imported
    listed = run("list", "--db", b_db)
    assert "from lab-a: 5 indicator(s)" in listed and "watching payment fingerprint" in listed
    accounts = tmp_path / "accounts.jsonl"
    accounts.write_text(
        json.dumps({"account_id": "acct-back", "payment_fingerprint": PAYMENT})
        + "\n"
        + json.dumps({"account_id": "acct-fine", "payment_fingerprint": "pm_fine"})
        + "\n"
    )
    swept = run("sweep", "--db", b_db, "--accounts", str(accounts), "--bans", str(bans), env=env)
    assert swept.startswith("1 account(s) held on peers' indicators") and "acct-back" in swept
    entries = {e.subject: e for e in map(ban_from_json, bans.read_text().splitlines())}
    assert entries["account:acct-back"].hold and "account:acct-fine" not in entries
    b = CaseStore.open(b_db)
    (case,) = b.queue(status="open")
    assert (
        case["peer"] == "lab-a"
        and case["title"] == "account acct-back: held on indicators shared by peer lab-a"
    )
    b.close()
    again = run("sweep", "--db", b_db, "--accounts", str(accounts), "--bans", str(bans), env=env)
    assert again.startswith("0 account(s)")  # its own entry (the hold) stands


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--peer", "Lab A"), "peer name"),
        (("--peer", "lab-a", "--min-confidence", "101"), "101"),
    ],
)
def test_import_refuses_bad_options(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    bundle = tmp_path / "b.json"
    bundle.write_text("{}")
    out = run(
        "import",
        str(bundle),
        "--db",
        str(tmp_path / "b.db"),
        "--bans",
        str(tmp_path / "x.jsonl"),
        *args,
        env={"DISTILLGUARD_INTEL_KEY": f"k1:{SECRET}"},
        ok=False,
    )
    assert message in out
