"""Per-recipient outcomes: who an attempt goes to, and what its Outcome does to the recipients, the
message's status, its events, its webhooks and the suppression list (docs/delivery.md).

Pure functions of the claimed row and the mailer's Outcome: the job records their result in one statement.
"""

from dataclasses import dataclass, field

from .addresses import suppression_keys
from .mailer import Failure

WAITING = ("pending", "deferred")  # the recipients an attempt goes to
# No such mailbox, no such domain, bad address syntax, and RFC 3463's "address changed":
# retrying cannot help, so the address is suppressed like a hard bounce.
HARD_BOUNCE_STATUSES = {"5.1.1", "5.1.2", "5.1.3", "5.1.10"}
RETRIES_EXHAUSTED = "Retries exhausted. Last error: "


def targets(row):
    """Return (index, address) of the recipients still waiting: pending, or deferred by an earlier attempt."""
    return [(index, r["address"]) for index, r in enumerate(row["recipients"]) if r["status"] in WAITING]


@dataclass
class AttemptRecord:
    """What an attempt changes, as the outcome statement writes it."""

    status: str | None  # the message's new status; None leaves it (a SENT message's background retry)
    changes: dict  # str(index) -> the fields of that recipient that change
    retry_pending: bool  # some recipient is still deferred and will be tried again
    events: list  # (type, detail), in order
    webhooks: list  # event types, e.g. "email.sent"
    suppress: list = field(default_factory=list)  # addresses refused for good, as the list spells them
    last_error: dict | None = None
    error_message: str | None = None
    smtp_response: str | None = None


def settle(row, outcome, final):
    """Return the AttemptRecord of `outcome` for the claimed `row`; `final` when no retry will follow."""
    recipients = row["recipients"]
    changes, exhausted, refused_now, accepted_now = {}, False, [], []
    for index, (status, reply, stage) in outcome.recipients.items():
        if status == "deferred" and final:
            status, exhausted = "refused", True
        entry = recipients[index]
        changes[str(index)] = {
            "status": status,
            "attempts": entry["attempts"] + 1,
            "smtp_code": reply.code,
            "enhanced_status": reply.enhanced_status,
            "response": str(reply),
        }
        if status == "refused":
            refused_now.append((entry["address"], reply, stage))
        elif status == "accepted":
            accepted_now.append((entry["address"], reply))
    statuses = [changes.get(str(i), {}).get("status", r["status"]) for i, r in enumerate(recipients)]
    failure = _failure(outcome, recipients)
    message = failure and _message(failure, outcome, recipients)
    record = AttemptRecord(
        status=None,
        changes=changes,
        retry_pending="deferred" in statuses,
        events=[],
        webhooks=[],
        suppress=suppression_keys(
            address
            for address, reply, stage in refused_now
            if stage == "rcpt" and reply.enhanced_status in HARD_BOUNCE_STATUSES
        ),  # fmt: skip
        last_error=failure and failure.as_dict(message),
        smtp_response=str(outcome.data_reply) if accepted_now else None,
    )
    if row["status"] != "SENDING":  # already SENT: a background retry of deferred recipients
        record.events = [("recipient_accepted", f"{address}: {reply}") for address, reply in accepted_now]
        record.events += [("recipient_refused", f"{address}: {reply}") for address, reply, _ in refused_now]
        if record.retry_pending:
            record.events.append(("attempt_failed", message))
        if refused_now:
            record.webhooks = ["email.recipient_failed"]
    elif "accepted" in statuses:
        record.status = "SENT"
        others = [f"{recipients[int(i)]['address']}: {c['response']}" for i, c in changes.items()
                  if c["status"] != "accepted"]  # fmt: skip
        record.events = [("sent", "; ".join([str(outcome.data_reply), *others]))]
        record.webhooks = ["email.sent"] + (["email.recipient_failed"] if "refused" in statuses else [])
    elif record.retry_pending:
        record.status, record.error_message = "PENDING", message
        record.events = [("attempt_failed", message)]
    else:
        record.status = "FAILED"
        record.error_message = (RETRIES_EXHAUSTED if exhausted else "") + (message or "No recipient left to send to.")
        record.events, record.webhooks = [("failed", record.error_message)], ["email.failed"]
    return record


def _failure(outcome, recipients):
    """Return the failure that decides what happens next: the one that stopped the attempt, else a
    deferred recipient's (a retry follows), else a refused one's; None when every recipient was accepted."""
    if outcome.failure is not None:
        return outcome.failure
    for wanted, retryable in (("deferred", True), ("refused", False)):
        for status, reply, stage in outcome.recipients.values():
            if status == wanted:
                return Failure(stage, reply, retryable)
    return None


def _message(failure, outcome, recipients):
    # A recipient's own refusal names the address (and every other recipient that failed with it).
    if failure is outcome.failure:
        return str(failure.reply)
    return "; ".join(
        f"{recipients[index]['address']}: {reply}"
        for index, (status, reply, _) in outcome.recipients.items()
        if status != "accepted"
    )
