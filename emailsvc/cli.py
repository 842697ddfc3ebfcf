"""Operator commands: `flask --app wsgi init-db | api-keys … | reconcile`."""

import click
from flask import current_app
from flask.cli import AppGroup, with_appcontext

from .auth import SCOPES, hash_key, new_key
from .db import init_db
from .queries.api_keys import insert_api_key, list_api_keys, revoke_api_key
from .reconciler import reconcile
from .services import get_services

api_keys = AppGroup("api-keys", help="Create, list and revoke API keys.")


@click.command("init-db")
@with_appcontext
def init_db_command():
    """Create the database if missing and apply schema.sql."""
    init_db(current_app.config["DATABASE_URL"])
    click.echo("Database ready.", err=True)


def parse_scopes(ctx, param, value):
    scopes = sorted({s.strip() for s in value.split(",") if s.strip()})
    unknown = set(scopes) - set(SCOPES)
    if unknown or not scopes:
        raise click.BadParameter(f"choose from {', '.join(SCOPES)}")
    return scopes


@api_keys.command("create")
@click.argument("name")
@click.option("--scopes", default=",".join(SCOPES), callback=parse_scopes, show_default=True)
def create_key(name, scopes):
    """Create a key and print it; only its hash is kept."""
    key = new_key()
    with get_services().db.cursor() as cur:
        insert_api_key(cur, name, hash_key(key), key[:12], scopes)
    click.echo(key)


@api_keys.command("list")
def list_keys():
    """Print one line per key: id, name, prefix, scopes, state."""
    with get_services().db.cursor() as cur:
        rows = list_api_keys(cur)
    for row in rows:
        state = f"revoked {row['revoked_at']:%Y-%m-%d}" if row["revoked_at"] else "active"
        click.echo(f"{row['id']}\t{row['name']}\t{row['key_prefix']}…\t{','.join(row['scopes'])}\t{state}")


@api_keys.command("revoke")
@click.argument("key_id", type=int)
def revoke_key(key_id):
    """Revoke a key, effective at once."""
    with get_services().db.cursor() as cur:
        if not revoke_api_key(cur, key_id):
            raise click.ClickException(f"No active key with id {key_id}.")
    click.echo(f"Revoked key {key_id}.", err=True)


@click.command("reconcile")
@click.option("--grace", type=float, help="Seconds a waiting row must be unchanged [default: RECONCILE_GRACE].")
@with_appcontext
def reconcile_command(grace):
    """Run one reconciler pass: re-enqueue lost jobs, settle abandoned sends."""
    done = reconcile(current_app.config["RECONCILE_GRACE"] if grace is None else grace)
    if done is None:
        raise click.ClickException("Another reconciler pass is running; try again shortly.")
    click.echo(
        f"Abandoned sends queued again: {done['abandoned']}; failed: {done['failed']}; "
        f"lost jobs queued again: {done['requeued']}; expired idempotency keys deleted: {done['expired_keys']}."
    )


def register_commands(app):
    app.cli.add_command(init_db_command)
    app.cli.add_command(api_keys)
    app.cli.add_command(reconcile_command)
