"""The plain message's bytes, written directly, are the email package's bytes for every message it takes."""

import re
from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from emailsvc.mailer import build_message, message_content, serialise
from emailsvc.plain_message import plain_content

ROW = {"from_addr": "Shop <shop@example.com>", "to_addrs": ["Reader <reader@example.com>"], "cc_addrs": [],
       "reply_to": None, "subject": "Your order has shipped", "scheduled_at": None,
       "created_at": datetime(2026, 12, 3, 9, 30, tzinfo=UTC), "message_id": "<42@example.com>", "headers": {},
       "body": "Hello, your order 42 is on its way.", "html": None, "attachments": []}  # fmt: skip
# Rows plain_content takes, unless a header line is too long; and the same with one field given an edgy
# value: a special the email package quotes or parses, double spaces, an encoded-word marker, a
# non-ASCII letter, a control character, a long line.
ATEXT = "aZ09!#$%&'*+/=?^_`{|}~-"
EDGY = ATEXT + '.,;:"()<>[]@\\ é\t\x00\x85'
plain_word = st.text(alphabet=ATEXT, min_size=1, max_size=10).filter(lambda w: "=?" not in w)
bare = st.builds("{}@{}".format, plain_word, st.sampled_from(["example.com", "a-b.example.org", "x.y", "1.x"]))
address = st.one_of(bare, st.builds("{} <{}>".format, st.lists(plain_word, min_size=1, max_size=3).map(" ".join), bare))
line = st.one_of(st.integers(0, 78).map(lambda n: "x" * n), st.text(alphabet=[chr(c) for c in range(1, 128)]
                 ).map(lambda t: t.replace("\r", "").replace("\n", "")[:78]))  # fmt: skip
text = st.builds(lambda lines, end: end.join(lines), st.lists(line, min_size=1, max_size=5).filter(lambda x: any(x)),
                 st.sampled_from(["\n", "\r\n", "\r"]))  # fmt: skip
moment = st.builds(lambda minutes, offset: datetime(2026, 12, 3, 9, 30, tzinfo=timezone(timedelta(minutes=offset)))
                   + timedelta(minutes=minutes), st.integers(0, 10**6), st.integers(-720, 720))  # fmt: skip
plain_rows = st.fixed_dictionaries({"from_addr": address, "to_addrs": st.lists(address, min_size=1, max_size=2),
    "cc_addrs": st.lists(address, max_size=1), "reply_to": st.one_of(st.none(), address),
    "subject": st.lists(plain_word, min_size=1, max_size=6).map(" ".join),
    "parts": st.one_of(st.tuples(text, st.none()), st.tuples(st.none(), text), st.tuples(text, text)),
    "created_at": moment,
    "message_id": st.sampled_from(["<0f5c3a9e-1b2c-4d5e-8f90-123456789abc@example.com>", "<a.b@x.example>"]),
})  # fmt: skip
edgy = st.text(alphabet=EDGY, min_size=1, max_size=90)
edgy_fields = {"from_addr": edgy, "to_addrs": st.lists(edgy, min_size=1, max_size=2), "reply_to": edgy,
               "subject": edgy, "parts": st.tuples(edgy, st.one_of(st.none(), edgy)),
               "message_id": edgy.map("<{}>".format)}  # fmt: skip


def _row(changes):
    body, html = changes.pop("parts")
    return {**ROW, **changes, "body": body, "html": html}


def _head_fits(row):
    values = [row["from_addr"], ", ".join(row["to_addrs"]), ", ".join(row["cc_addrs"]), row["reply_to"] or "",
              row["subject"]]  # fmt: skip
    return all(len(value) + len("Reply-To: ") <= 78 for value in values)


BOUNDARY = re.compile(rb"={15}\d{19}==")  # the email package's multipart boundaries are random


def _email_package(row):
    return serialise(build_message(row), international=False)


def _same(ours, theirs):
    return BOUNDARY.sub(b"B", ours) == BOUNDARY.sub(b"B", theirs)


@settings(max_examples=300, deadline=None)
@given(plain_rows)
def test_a_plain_message_is_written_directly_as_the_email_package_writes_it(changes):
    row = _row(changes)
    ours = plain_content(row)
    assert ours is not None or not _head_fits(row)
    if ours is not None:
        assert _same(ours, _email_package(row))


@settings(max_examples=300, deadline=None)
@given(plain_rows, st.data())
def test_a_message_with_an_edgy_field_is_the_email_packages_bytes_or_not_taken(changes, data):
    field = data.draw(st.sampled_from(sorted(edgy_fields)))
    row = _row({**changes, field: data.draw(edgy_fields[field])})
    ours = plain_content(row)
    if ours is not None:
        assert _same(ours, _email_package(row))


def test_the_lines_at_the_folding_edge():
    for length in (76, 77, 78, 79, 80):
        for row in (
            {**ROW, "subject": "s" * (length - len("Subject: "))},
            {**ROW, "to_addrs": ["r" * (length - len("To: @example.com")) + "@example.com"]},
            {**ROW, "body": "b" * length + "\nshort"},
        ):
            ours = plain_content(row)
            assert (ours is not None) == (length <= 78)
            assert ours is None or _same(ours, _email_package(row))


def test_a_typical_message_is_written_directly():
    for changes in ({}, {"body": None, "html": "<p>Hello</p>"}, {"cc_addrs": ["c@example.com"], "reply_to": "h@x.org"},
                    {"html": "<p>Hello</p>"}):  # fmt: skip
        row = {**ROW, **changes}
        assert plain_content(row) is not None
        ours, international = message_content(row, ["reader@example.com"])
        assert _same(ours, _email_package(row)) and not international


def test_what_it_does_not_take_goes_the_email_packages_way():
    for changes in (
        {"html": "<p>" + "=" * 15 + "</p>"},  # a line the email package might pick another boundary for
        {"headers": {"X-Campaign": "nov"}},
        {"subject": "Grüße"},
        {"from_addr": '"Shop, Inc." <shop@example.com>'},
        {"subject": "=?utf-8?q?hi?="},
        {"body": "x" * 79},
        {"attachments": [{"filename": "a.txt"}]},
    ):
        assert plain_content({**ROW, **changes}) is None
