"""``ocsge accounts``: the admin verb for consolidation accounts and tokens (no HTTP route creates one).

ocsge accounts create alice --role interpreter      # password read twice from the terminal, or
ocsge accounts create bot --role reviewer --password-stdin < secret.txt
ocsge accounts token alice --days 30                # a bearer token for scripts
ocsge accounts list
ocsge accounts disable alice                         # its tokens stop working at once
"""

from __future__ import annotations

import sys

import click


def _store_and_auth(root: str | None):  # type: ignore[no-untyped-def]
    from pathlib import Path

    from ocsge.consolidation.store import open_store
    from ocsge.settings import get_settings
    from ocsge.storage import open_storage
    from services.consolidation.auth import Authenticator
    from services.consolidation.settings import get_consolidation_settings, store_dsn

    settings = get_consolidation_settings()
    storage = open_storage(root or get_settings().storage_root)
    store = open_store(store_dsn(settings), storage.root)
    secret = Path(settings.secret_file or Path(storage.root) / "consolidation" / "jwt-secret")
    return store, Authenticator(store, settings, secret)


root_option = click.option(
    "--root",
    default=None,
    help="Storage root; default OCSGE_STORAGE_ROOT (the store is "
    "OCSGE_CONSOLIDATION_DSN if set, else {root}/consolidation/consolidation.sqlite).",
)
ACTOR = "cli"


@click.group("accounts")
def accounts() -> None:
    """Consolidation accounts (contributor, interpreter, reviewer, admin) and their tokens."""


@accounts.command("create")
@click.argument("username")
@click.option("--role", required=True, type=click.Choice(["contributor", "interpreter", "reviewer", "admin"]))
@click.option("--password-stdin", is_flag=True, help="Read the password from the first line of stdin.")
@click.option("--no-password", is_flag=True, help="No password (an OIDC user, or tokens only).")
@root_option
def create(username: str, role: str, password_stdin: bool, no_password: bool, root: str | None) -> None:
    """Create an account."""
    from ocsge.consolidation.model import Role
    from services.consolidation.auth import hash_password

    if no_password:
        password = None
    elif password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = click.prompt("password", hide_input=True, confirmation_prompt=True)
    if password is not None and len(password) < 8:
        raise click.BadParameter("at least 8 characters", param_hint="password")
    store, _ = _store_and_auth(root)
    store.create_account(username, hash_password(password) if password else None, Role.parse(role), ACTOR)
    click.echo(f"account {username} ({role}) created")


@accounts.command("token")
@click.argument("username")
@click.option("--days", default=30, type=click.IntRange(1, 366), show_default=True, help="Validity.")
@root_option
def token(username: str, days: int, root: str | None) -> None:
    """Print a bearer token for an account (for scripts: Authorization: Bearer …)."""
    from ocsge.consolidation.model import NotFound

    store, auth = _store_and_auth(root)
    account = store.get_account(username)
    if account is None:
        raise NotFound(f"no account {username!r}")
    if account.disabled:
        raise click.ClickException(f"account {username} is disabled")
    issued, _ = auth.issue(account, ttl_s=days * 86400)
    click.echo(issued)


@accounts.command("list")
@root_option
def list_accounts(root: str | None) -> None:
    """List the accounts."""
    store, _ = _store_and_auth(root)
    for a in store.list_accounts():
        click.echo(f"{a.username:<24} {a.role.label:<12} {'disabled' if a.disabled else 'enabled':<9} {a.created}")


@accounts.command("disable")
@click.argument("username")
@root_option
def disable(username: str, root: str | None) -> None:
    """Disable an account: its tokens and sessions stop working at once."""
    store, _ = _store_and_auth(root)
    store.set_disabled(username, True, ACTOR)
    click.echo(f"account {username} disabled")


@accounts.command("enable")
@click.argument("username")
@root_option
def enable(username: str, root: str | None) -> None:
    """Enable a disabled account again."""
    store, _ = _store_and_auth(root)
    store.set_disabled(username, False, ACTOR)
    click.echo(f"account {username} enabled")
