"""``ocsge accounts``: accounts and tokens made by the admin verb work against the API's checks; a disabled
account's tokens stop at once; the local signing secret is created private."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from ocsge.cli import cli
from ocsge.consolidation.model import Role, Unauthenticated
from ocsge.consolidation.store import ConsolidationStore
from services.consolidation.auth import Authenticator
from services.consolidation.settings import ConsolidationSettings


def run(*args: str, stdin: str | None = None) -> str:
    result = CliRunner().invoke(cli, ["accounts", *args], input=stdin)
    assert result.exit_code == 0, result.output
    return result.output


def test_accounts_verb_creates_lists_issues_and_disables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OCSGE_CONSOLIDATION_DSN", raising=False)
    root = str(tmp_path)
    assert "created" in run(
        "create", "alice", "--role", "interpreter", "--password-stdin", "--root", root, stdin="long enough password\n"
    )
    run("create", "root", "--role", "admin", "--password-stdin", "--root", root, stdin="another password!\n")
    again = CliRunner().invoke(
        cli,
        ["accounts", "create", "alice", "--role", "admin", "--password-stdin", "--root", root],
        input="whatever password\n",
    )
    assert again.exit_code != 0 and "exists" in str(again.exception)
    short = CliRunner().invoke(
        cli, ["accounts", "create", "bob", "--role", "admin", "--password-stdin", "--root", root], input="short\n"
    )
    assert short.exit_code != 0
    listing = run("list", "--root", root).splitlines()
    assert [line.split()[:3] for line in listing] == [["alice", "interpreter", "enabled"], ["root", "admin", "enabled"]]
    token = run("token", "alice", "--days", "2", "--root", root).strip()
    store = ConsolidationStore(tmp_path / "consolidation" / "consolidation.sqlite")
    secret = tmp_path / "consolidation" / "jwt-secret"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    auth = Authenticator(store, ConsolidationSettings(), secret)
    who = auth.verify(token)
    assert (who.username, who.role, who.via) == ("alice", Role.INTERPRETER, "local")
    assert 2 * 86400 - 60 <= who.expires - __import__("time").time() <= 2 * 86400
    # the password hash is argon2, never the password
    account = store.get_account("alice")
    assert (
        account is not None
        and account.password_hash.startswith("$argon2")
        and "long enough" not in str(account.password_hash)
    )
    run("disable", "alice", "--root", root)
    with pytest.raises(Unauthenticated):
        auth.verify(token)
    assert "disabled" in run("list", "--root", root).splitlines()[0]
    run("enable", "alice", "--root", root)
    assert auth.verify(token).username == "alice"
    actions = [(e["actor"], e["action"], e["entity_id"]) for e in store.audit_log()]
    assert actions == [
        ("cli", "create", "alice"),
        ("cli", "create", "root"),
        ("cli", "disable", "alice"),
        ("cli", "enable", "alice"),
    ]
