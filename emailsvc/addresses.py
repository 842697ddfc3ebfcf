"""Parse and normalise email addresses with the standard library's header parser and email-validator."""

import functools
import re
from email.errors import NonASCIILocalPartDefect
from email.headerregistry import Address, HeaderRegistry
from email.utils import parseaddr

import email_validator
from email_validator import EmailNotValidError, validate_email

from .header_safety import CONTROL_CHARS, ENCODED_WORD_START, NESTED, NO_CONTROLS, UNWRITABLE, unwritable

# Room for a display name besides the longest usable address (254): the parser's cost grows with the
# text, so anything longer is refused before it is parsed.
MAX_ADDRESS_LENGTH = 320
# RFC 6761 and later special-use and reserved names (IANA's registry, plus `.internal` and `.alt`):
# accepted unless EMAIL_REJECT_SPECIAL_USE, since a relay that serves an intranet delivers to them.
SPECIAL_USE_DOMAINS = ("alt", "arpa", "example", "example.com", "example.net", "example.org", "internal",
                       "invalid", "local", "localhost", "onion", "test")  # fmt: skip
NEVER_DELIVERABLE = ("invalid",)  # RFC 6761: guaranteed never to exist
# Normalising an address is a pure function of its text, and the dearest step of a plain send (the
# header parser and email-validator, ~0.15 ms): each process remembers the latest results, so a
# sender or recipient that recurs costs a dictionary look-up. Refusals are exceptions, never kept.
REMEMBERED_ADDRESSES = 4096
# email-validator refuses special-use names itself, by this module-level list, its documented switch;
# emailsvc decides with its own list and setting instead, so the library's is emptied.
email_validator.SPECIAL_USE_DOMAIN_NAMES.clear()
_registry = HeaderRegistry()
# What the email package makes of bytes an encoded word's charset cannot decode (surrogateescape).
UNDECODED = re.compile(r"[\ud800-\udfff]")


class InvalidAddress(ValueError):
    """The text is not exactly one valid address."""


def _parse_header(text):
    """Return `text` parsed as a To header holding exactly one address, or raise InvalidAddress."""
    try:
        header = _registry("to", text)
    except Exception as exc:  # the parser raises assorted errors on hostile input (CR/LF decoded, …)
        raise InvalidAddress("Not a valid email address.") from exc
    defects = [d for d in header.defects if not isinstance(d, NonASCIILocalPartDefect)]
    if defects or len(header.addresses) != 1:
        raise InvalidAddress("Not a valid email address.")
    return header


def _parse_one(text):
    return _parse_header(text).addresses[0]


def parse_address(text):
    """Return (display name, addr-spec) of one address such as `Shop <shop@example.com>`.

    The display name is returned decoded (RFC 2047), as the message builder will decode it.
    """
    if len(text) > MAX_ADDRESS_LENGTH:
        raise InvalidAddress(f"Must be at most {MAX_ADDRESS_LENGTH} characters.")
    if CONTROL_CHARS.search(text):
        raise InvalidAddress(NO_CONTROLS)
    parsed = _parse_one(text)
    if CONTROL_CHARS.search(parsed.display_name):
        raise InvalidAddress(NO_CONTROLS)
    domain = parsed.domain.lower().rstrip(".")
    try:
        # A dotless domain is refused (it is no mail domain) except localhost, the default sender's.
        checked = validate_email(
            parsed.addr_spec, check_deliverability=False, globally_deliverable=domain != "localhost"
        )
    except EmailNotValidError as exc:
        raise InvalidAddress(f"Not a valid email address: {exc}") from exc
    if is_special_use(checked.ascii_domain, NEVER_DELIVERABLE):
        raise InvalidAddress("Not a valid email address: the domain is reserved and never exists.")
    # The ASCII form (punycode domain) is what relays accept; it exists unless the local part is not ASCII.
    return parsed.display_name, checked.ascii_email or checked.normalized


def is_special_use(domain, names=SPECIAL_USE_DOMAINS):
    """True when the (ASCII, normalised) `domain` is one of `names` or below one."""
    domain = domain.lower()
    return any(domain == name or domain.endswith("." + name) for name in names)


def format_address(display_name, addr_spec):
    """Return the header form of an address, quoting the display name where needed."""
    username, domain = addr_spec.rsplit("@", 1)
    return str(Address(display_name=display_name, username=username, domain=domain))


@functools.lru_cache(maxsize=REMEMBERED_ADDRESSES)
def normalize_address(text):
    """Return `text` as one valid, normalised address, or raise InvalidAddress."""
    display_name, spec = parse_address(text)
    normalised = format_address(display_name, spec)
    # The builder parses the stored form again: a decoded display name must not decode a second time.
    if ENCODED_WORD_START in text:
        try:
            reparsed = _parse_header(normalised)
        except InvalidAddress:
            raise InvalidAddress(NESTED) from None
        if reparsed.addresses[0].display_name != display_name:
            raise InvalidAddress(NESTED)
        # Folding costs more than parsing twice. The stored form is decoded text, which the builder encodes
        # as UTF-8 words and cannot fail to, unless decoding left bytes it could not read (surrogates) or
        # it still holds something like an encoded word: only then is it folded to see.
        if (UNDECODED.search(normalised) or ENCODED_WORD_START in normalised) and unwritable(reparsed):
            raise InvalidAddress(UNWRITABLE)
    return normalised


@functools.lru_cache(maxsize=REMEMBERED_ADDRESSES)
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
