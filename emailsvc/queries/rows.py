"""The row shape of each table family: its columns by name, joined into SQL once, at import.

Queries select these names rather than `*`, so a column added to a table reaches clients, webhooks
and the worker only when it is added here on purpose.
"""

# The email log: every column of `emails`. E_EMAIL_SQL is qualified by the alias `e`.
EMAIL_COLUMNS = (
    "id", "project_id", "api_key_id", "status", "from_addr", "to_addrs", "cc_addrs", "bcc_addrs", "reply_to",
    "subject", "body", "html", "headers", "metadata", "message_id", "attempts", "error_message", "smtp_response",
    "created_at", "scheduled_at", "sent_at", "failed_at", "delivered_at", "updated_at", "recipients", "last_error",
    "retry_pending", "template", "resent_from", "content_purged_at", "attachments",
)  # fmt: skip
EMAIL_SQL = ", ".join(EMAIL_COLUMNS)


def qualified(alias):
    """Return the row shape's columns prefixed with `alias.`, for a join."""
    return ", ".join(f"{alias}.{column}" for column in EMAIL_COLUMNS)


E_EMAIL_SQL = qualified("e")
