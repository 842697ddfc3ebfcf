"""/ui/dev/mail: the development sink's caught mail (DEV_MAIL_DIR, set by `make run` only), like Mailpit.

The sink catches the mail of every project, so this is for a developer's own machine: off unless
DEV_MAIL_DIR is set, and then only for a signed-in key that reads mail.
"""

import re
from email import policy
from email.parser import BytesHeaderParser, BytesParser
from pathlib import Path

from flask import Blueprint, current_app, render_template

from ..auth import require_scope
from ..errors import NotFound
from .previews import html_preview

bp = Blueprint("dev_mail", __name__, url_prefix="/dev/mail")
# The sink names its files <time>-<hex>.eml; any other name (a path, `..`) is no message of the sink.
FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,120}\.eml")
LISTED = 200  # the newest files shown; the sink's folder can grow for as long as `make run` runs
HEAD_BYTES = 64 * 1024  # enough of a file for its headers
LARGEST = 25 * 1024 * 1024  # bigger files are listed but not opened


@bp.before_request
def only_when_configured():
    if not current_app.config["DEV_MAIL_DIR"]:
        raise NotFound("The development mail folder is off (DEV_MAIL_DIR is not set).")


def mail_dir():
    return Path(current_app.config["DEV_MAIL_DIR"])


def caught_file(name):
    """The file of one caught message, by its bare name; NotFound for anything else."""
    path = mail_dir() / name
    if not FILE_NAME.fullmatch(name) or path.is_symlink() or not path.is_file() or path.stat().st_size > LARGEST:
        raise NotFound("No such message in the development mail folder.")
    return path


def content_of(part):
    """A part's decoded text, or None when there is no such part or its charset is unknown."""
    try:
        return part.get_content() if part is not None else None
    except (LookupError, UnicodeError):
        return None


def headers_of(path):
    with path.open("rb") as f:
        return BytesHeaderParser(policy=policy.default).parsebytes(f.read(HEAD_BYTES))


@bp.get("")
@require_scope("read")
def caught():
    """The newest caught messages first (the sink's names begin with the time)."""
    found = mail_dir().glob("*.eml")
    names = sorted((p.name for p in found if FILE_NAME.fullmatch(p.name) and not p.is_symlink()), reverse=True)
    return render_template("ui/dev_mail.html", messages=[(n, headers_of(mail_dir() / n)) for n in names[:LISTED]],
                           total=len(names), directory=mail_dir())  # fmt: skip


@bp.get("/<name>")
@require_scope("read")
def one(name):
    """One caught message: its headers, text body, attachments and the frame that previews its HTML."""
    message = BytesParser(policy=policy.default).parsebytes(caught_file(name).read_bytes())
    text = message.get_body(preferencelist=("plain",))
    attachments = [
        {"filename": part.get_filename() or "(no name)", "content_type": part.get_content_type(),
         "size": len(part.get_payload(decode=True) or b"")}
        for part in message.iter_attachments()
    ]  # fmt: skip
    return render_template("ui/dev_message.html", name=name, message=message, attachments=attachments,
                           text=content_of(text))  # fmt: skip


@bp.get("/<name>/preview")
@require_scope("read")
def preview(name):
    """The caught message's HTML part alone, for the sandboxed frame."""
    message = BytesParser(policy=policy.default).parsebytes(caught_file(name).read_bytes())
    return html_preview(content_of(message.get_body(preferencelist=("html",))))
