"""Parse and normalise email addresses with the standard library's header parser and email-validator."""

import re
from email.errors import NonASCIILocalPartDefect
from email.headerregistry import Address, HeaderRegistry
from email.utils import parseaddr

from email_validator import EmailNotValidError, validate_email

# C0 controls and DEL, plus what Python's email package also treats as line breaks (NEL, U+2028/9):
# it refuses to build a header holding any of them, so they are refused at the API instead.
CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]")
_registry = HeaderRegistry()


class InvalidAddress(ValueError):
    """The text is not exactly one valid address."""


def parse_address(text):
    """Return (display name, addr-spec) of one address such as `Shop <shop@example.com>`."""
    if CONTROL_CHARS.search(text):
        raise InvalidAddress("Must not contain line breaks or control characters.")
    try:
        header = _registry("to", text)
    except Exception as exc:  # the parser raises assorted errors on hostile input
        raise InvalidAddress("Not a valid email address.") from exc
    defects = [d for d in header.defects if not isinstance(d, NonASCIILocalPartDefect)]
    if defects or len(header.addresses) != 1:
        raise InvalidAddress("Not a valid email address.")
    parsed = header.addresses[0]
    try:
        checked = validate_email(parsed.addr_spec, check_deliverability=False)
    except EmailNotValidError as exc:
        raise InvalidAddress(f"Not a valid email address: {exc}") from exc
    # The ASCII form (punycode domain) is what relays accept; it exists unless the local part is not ASCII.
    return parsed.display_name, checked.ascii_email or checked.normalized


def format_address(display_name, addr_spec):
    """Return the header form of an address, quoting the display name where needed."""
    username, domain = addr_spec.rsplit("@", 1)
    return str(Address(display_name=display_name, username=username, domain=domain))


def normalize_address(text):
    """Return `text` as one valid, normalised address, or raise InvalidAddress."""
    return format_address(*parse_address(text))


def addr_spec(text):
    """Return the bare address of an already normalised address, e.g. for the SMTP envelope."""
    return parseaddr(text)[1]


def domain_of(text):
    """Return the lower-cased domain of an already normalised address."""
    return addr_spec(text).rsplit("@", 1)[-1].lower()


def suppression_keys(addresses):
    """Return addresses as the suppression list spells them: bare and lower-cased (mailboxes ignore case
    in practice), sorted, without repeats."""
    return sorted({addr_spec(address).lower() for address in addresses})
