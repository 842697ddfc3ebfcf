"""What the processes count as it happens, for GET /metrics (docs/operations.md lists every metric).

The API's workers count requests; the sending processes, attempts and their SMTP time; the webhook
processes, deliveries; the supervisor, the reconciler's recoveries. Each process keeps its counts in
files of its own (emailsvc/metrics/files.py) so a scrape sums them all. What is state rather than
events (queues, waiting messages, the log's totals) is read when scraped (emailsvc/metrics/state.py).

Every metric here has labels, so no value exists before its first use: a process chooses where its
values live before it counts anything. Label values are bounded: route templates, never paths;
reply classes, never addresses; project ids.
"""

from prometheus_client import CollectorRegistry, Counter, Histogram

# Ours alone, not the client's global registry, whose process metrics would describe one process only.
REGISTRY = CollectorRegistry(auto_describe=True)
# The methods a route can have; anything else a client invents is counted as "other".
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "unmatched"  # the route of a request that matched none: its path is the client's to choose
# RFC 3463's subjects (the first digit after the class); a relay's reply text can say anything else.
ENHANCED_SUBJECTS = frozenset("01234567")

# Requests are its _count: one histogram, two writes a request, where a counter beside it would add a third.
HTTP_DURATION = Histogram(
    "emailsvc_http_request_duration_seconds", "Time from a request's first hook to its response, by route "
    "template, method and status; _count counts the requests.",
    ["route", "method", "status"], registry=REGISTRY,
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)  # fmt: skip
SEND_ATTEMPTS = Counter(
    "emailsvc_send_attempts", "SMTP delivery attempts, by outcome and by the class and subject of the reply "
    "that decided it (2/4/5 or none; e.g. 5.1, or none).",
    ["outcome", "reply_class", "enhanced_status"], registry=REGISTRY,
)  # fmt: skip
SMTP_DURATION = Histogram(
    "emailsvc_smtp_send_duration_seconds", "Time one attempt spent talking to the relay, by outcome.",
    ["outcome"], registry=REGISTRY,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)  # fmt: skip
WEBHOOK_DELIVERIES = Counter(
    "emailsvc_webhook_deliveries", "Outbound webhook attempts, by outcome: delivered, retrying, failed "
    "(no retry left), abandoned (the endpoint was disabled).",
    ["outcome"], registry=REGISTRY,
)  # fmt: skip
MESSAGES_BOUNCED = Counter(
    "emailsvc_messages_bounced", "Messages a delivery event moved to BOUNCED, by project id.",
    ["project"], registry=REGISTRY,
)  # fmt: skip
RECONCILER_RECOVERIES = Counter(
    "emailsvc_reconciler_recoveries", "What the reconciler's passes in worker.py recovered: abandoned sends "
    "queued again, abandoned sends failed, lost jobs queued again.",
    ["kind"], registry=REGISTRY,
)  # fmt: skip


# (route, method, status) -> the histogram's child: labels() checks and converts its arguments on every
# call, several times the cost of the count itself. Bounded as the labels are.
_request_children = {}


def count_request(rule, method, status, seconds):
    """Count one answered request: `rule` is its URL rule (None when no route matched)."""
    route = rule.rule if rule is not None else UNMATCHED
    method = method if method in METHODS else "other"
    child = _request_children.get((route, method, status))
    if child is None:
        child = _request_children[(route, method, status)] = HTTP_DURATION.labels(route, method, status)
    child.observe(seconds)


def reply_labels(code, enhanced_status):
    """Return (reply_class, enhanced_status) labels of an SMTP reply: "5" and "5.1" for 550 5.1.1; "none" for
    no reply (a connection error, a timeout) or none given."""
    if code is None or not 200 <= code < 600:  # smtplib says -1 for a reply it could not read
        return "none", "none"
    subject = enhanced_status and enhanced_status.split(".")[1]
    return str(code)[0], (enhanced_status[:3] if subject in ENHANCED_SUBJECTS else "none")


def count_attempt(outcome, code, enhanced_status, seconds):
    """Count one SMTP attempt: `outcome` is sent, deferred or failed, decided by the reply `code` (or None)."""
    SEND_ATTEMPTS.labels(outcome, *reply_labels(code, enhanced_status)).inc()
    SMTP_DURATION.labels(outcome).observe(seconds)
