"""`hallmark keys`: API keys for the HTTP API."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from hallmark.cli.common import audit_store, console, fail, load_settings

keys_app = typer.Typer(
    help="API keys for the HTTP API (roles: generator, reviewer, admin).", no_args_is_help=True
)


@keys_app.command("create")
def keys_create(
    role: Annotated[str, typer.Option(help="generator, reviewer or admin.")],
    name: Annotated[str, typer.Option(help="Who or what uses the key.")],
    tenant: Annotated[
        str | None, typer.Option(help="For generator keys: the tenant whose records it sees.")
    ] = None,
    tier: Annotated[
        str | None,
        typer.Option(help="For generator keys: the policy tier it generates under (default: the policy's)."),
    ] = None,
) -> None:
    """Create an API key and print it once (only its hash is stored)."""
    from audit import AuditError
    from audit.keys import create_key
    from policy import Policy, PolicyError

    settings = load_settings()
    try:
        if tier is not None:
            Policy.load(settings.policy).tier(tier)  # a tier the policy has
        row, key = create_key(audit_store(settings), role, name, tenant, tier)
    except (AuditError, PolicyError) as exc:
        raise fail(str(exc)) from exc
    console.print(
        f"[green]created[/] {row.role} key {row.key_id} for {row.name}"
        + (f" (tenant {row.tenant}, tier {row.tier or 'default'})" if row.tenant else "")
        + "; it is shown only this once:"
    )
    print(key)


@keys_app.command("list")
def keys_list() -> None:
    """Show every key's id, role, tenant, name and state (never the secret)."""
    from audit.keys import list_keys

    table = Table()
    for column in ("key id", "role", "tenant", "name", "created", "state"):
        table.add_column(column)
    for row in list_keys(audit_store(load_settings())):
        state = f"revoked {row.revoked_at:%Y-%m-%d %H:%M}" if row.revoked_at else "active"
        table.add_row(
            row.key_id, row.role, row.tenant or "", row.name, f"{row.created_at:%Y-%m-%d %H:%M}", state
        )
    Console().print(table)


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The key id shown by `hallmark keys list`.")],
) -> None:
    """Revoke a key at once."""
    from audit import AuditError
    from audit.keys import revoke_key

    try:
        revoke_key(audit_store(load_settings()), key_id)
    except AuditError as exc:
        raise fail(str(exc)) from exc
    Console().print(f"[green]revoked[/] {key_id}")
