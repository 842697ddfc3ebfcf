"""Operator commands: `flask --app wsgi init-db | projects … | api-keys … | reconcile | purge`."""

import time

import click
import psycopg2.errors
from flask import current_app
from flask.cli import AppGroup, with_appcontext

from . import key_memory
from .addresses import CONTROL_CHARS
from .auth import OPERATOR, SCOPES, hash_key, new_key
from .db import init_db
from .queries.api_keys import insert_api_key, list_api_keys, revoke_api_key
from .queries.projects import ensure_project, find_project, insert_project, list_projects, rename_project
from .reconciler import reconcile
from .retention import purge
from .services import get_services

api_keys = AppGroup("api-keys", help="Create, list and revoke API keys.")
projects = AppGroup("projects", help="Create, list and rename projects: the applications sharing this service.")
DEFAULT_PROJECT = "default"  # where keys go unless told, and where an upgrade puts what existed before projects


@click.command("init-db")
@with_appcontext
def init_db_command():
    """Create the database if missing and apply schema.sql."""
    init_db(current_app.config["DATABASE_URL"])
    click.echo("Database ready.", err=True)


def parse_scopes(ctx, param, value):
    scopes = sorted({s.strip() for s in value.split(",") if s.strip()})
    unknown = set(scopes) - {*SCOPES, OPERATOR}
    if unknown or not scopes:
        raise click.BadParameter(f"choose from {', '.join((*SCOPES, OPERATOR))}")
    if OPERATOR in scopes and len(scopes) > 1:
        raise click.BadParameter(f"an {OPERATOR} key reads no project's mail: give {OPERATOR} alone")
    return scopes


def parse_project_name(ctx, param, value):
    name = value.strip()
    if not name or len(name) > 100 or CONTROL_CHARS.search(name):
        raise click.BadParameter("1–100 characters, no control characters")
    return name


@projects.command("create")
@click.argument("name", callback=parse_project_name)
def create_project(name):
    """Create a project; give its keys with `api-keys create NAME --project PROJECT`."""
    with get_services().db.cursor() as cur:
        if insert_project(cur, name) is None:
            raise click.ClickException(f"A project named {name!r} exists already.")
    click.echo(f"Created project {name!r}.", err=True)


@projects.command("list")
def list_all_projects():
    """Print one line per project: id, name, active keys, created."""
    with get_services().db.cursor() as cur:
        rows = list_projects(cur)
    for row in rows:
        created = f"created {row['created_at']:%Y-%m-%d}"
        click.echo(f"{row['id']}\t{row['name']}\t{row['active_keys']} active keys\t{created}")


@projects.command("rename")
@click.argument("old")
@click.argument("new", callback=parse_project_name)
def rename(old, new):
    """Rename a project; its keys, mail and settings stay with it."""
    try:
        with get_services().db.cursor() as cur:
            renamed = rename_project(cur, old, new)
    except psycopg2.errors.UniqueViolation as exc:
        raise click.ClickException(f"A project named {new!r} exists already.") from exc
    if not renamed:
        raise click.ClickException(f"No project named {old!r}.")
    click.echo(f"Renamed project {old!r} to {new!r}.", err=True)


@api_keys.command("create")
@click.argument("name")
@click.option("--project", default=DEFAULT_PROJECT, show_default=True,
              help="The key's project; `default` is created if missing, any other must exist.")  # fmt: skip
@click.option("--scopes", default=",".join(SCOPES), callback=parse_scopes, show_default=True)
def create_key(name, project, scopes):
    """Create a key in a project and print it; only its hash is kept."""
    key = new_key()
    with get_services().db.cursor() as cur:
        # Any other name must exist, so a typo cannot quietly start a project of its own.
        row = ensure_project(cur, project) if project == DEFAULT_PROJECT else find_project(cur, project)
        if row is None:
            raise click.ClickException(f"No project named {project!r}; create it with `projects create`.")
        insert_api_key(cur, row["id"], name, hash_key(key), key[:12], scopes)
    click.echo(key)


@api_keys.command("list")
def list_keys():
    """Print one line per key: id, name, prefix, scopes, state, project."""
    with get_services().db.cursor() as cur:
        rows = list_api_keys(cur)
    for row in rows:
        state = f"revoked {row['revoked_at']:%Y-%m-%d}" if row["revoked_at"] else "active"
        click.echo(
            f"{row['id']}\t{row['name']}\t{row['key_prefix']}…\t{','.join(row['scopes'])}\t{state}\t{row['project']}"
        )


@api_keys.command("revoke")
@click.argument("key_id", type=int)
def revoke_key(key_id):
    """Revoke a key, effective at once: this returns once every API process will refuse it."""
    services = get_services()
    with services.db.cursor() as cur:
        if not revoke_api_key(cur, key_id):
            raise click.ClickException(f"No active key with id {key_id}.")
    if not key_memory.announce_revocation(services.redis, time.monotonic()):
        waited = key_memory.TRUST_SECONDS
        click.echo(f"Redis did not answer: waited {waited} s, until no process trusts a key it remembers.", err=True)
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


@click.command("purge")
@click.option("--dry-run", is_flag=True, help="Count what would be removed; remove nothing.")
@with_appcontext
def purge_command(dry_run):
    """Run one retention pass: message content past BODY_RETENTION_DAYS, log rows past LOG_RETENTION_DAYS."""
    done = purge(current_app.config, dry_run=dry_run)
    if done is None:
        raise click.ClickException("Another purge is running; try again later.")
    for step, before, removed in done:
        if before is None:
            click.echo(f"{step.name.capitalize()}: kept for ever ({step.setting}=0).")
        else:
            verb = "would be deleted" if dry_run else "deleted"
            click.echo(f"{step.name.capitalize()} {verb}: {removed} messages created before {before:%Y-%m-%d %H:%M} "
                       f"UTC ({step.setting}={current_app.config[step.setting]}).")  # fmt: skip


def register_commands(app):
    app.cli.add_command(init_db_command)
    app.cli.add_command(projects)
    app.cli.add_command(api_keys)
    app.cli.add_command(reconcile_command)
    app.cli.add_command(purge_command)
