"""Parsing addresses: special-use names, reserved names, length caps, encoded display names."""

import pytest

from emailsvc.addresses import MAX_ADDRESS_LENGTH, InvalidAddress, is_special_use, normalize_address


@pytest.mark.parametrize(
    ("text", "normalised"),
    [
        ("user@corp.local", "user@corp.local"),
        ("ops@localhost", "ops@localhost"),
        ("no-reply@localhost", "no-reply@localhost"),
        ("qa@staging.test", "qa@staging.test"),
        ("svc@db.internal", "svc@db.internal"),
        ("a@printer.home.arpa", "a@printer.home.arpa"),
        ("a@www.example", "a@www.example"),
        ("a@example.com", "a@example.com"),
        ("a@x.onion", "a@x.onion"),
        ("Ops <ops@BÜCHER.test>", "Ops <ops@xn--bcher-kva.test>"),  # still IDNA-normalised
    ],
)
def test_special_use_names_are_accepted_and_normalised(text, normalised):
    assert normalize_address(text) == normalised


@pytest.mark.parametrize("text", ["a@x.invalid", "a@invalid", "a@sub.x.INVALID", "a@corp..local", "a@-x.test"])
def test_invalid_and_malformed_domains_are_refused(text):
    with pytest.raises(InvalidAddress):
        normalize_address(text)


@pytest.mark.parametrize("domain", ["corp.local", "localhost", "x.test", "a.internal", "home.arpa", "b.example",
                                    "example.com", "x.alt", "a.onion"])  # fmt: skip
def test_special_use_names_are_recognised(domain):
    assert is_special_use(domain)


@pytest.mark.parametrize("domain", ["example.co", "mytest.com", "local.com", "internal.example.co.uk"])
def test_public_names_are_not_special_use(domain):
    assert not is_special_use(domain)


def test_an_address_past_the_length_cap_is_refused_before_it_is_parsed():
    name = "N" * (MAX_ADDRESS_LENGTH - len(" <a@example.com>"))
    assert normalize_address(f"{name} <a@example.com>") == f"{name} <a@example.com>"
    with pytest.raises(InvalidAddress, match="at most"):
        normalize_address(f"{name}N <a@example.com>")


def test_an_encoded_display_name_is_stored_decoded_and_must_not_decode_again():
    assert normalize_address("=?utf-8?q?Caf=C3=A9?= <a@example.com>") == "Café <a@example.com>"
    with pytest.raises(InvalidAddress, match="further encoded words"):
        normalize_address("=?utf-8?q?=3D=3Futf-8=3Fq=3FEve=3F=3D?= <a@example.com>")


def test_a_remembered_address_answers_as_the_first_time_and_a_refusal_is_never_remembered():
    assert [normalize_address("Ops <ops@BÜCHER.test>") for _ in range(3)] == ["Ops <ops@xn--bcher-kva.test>"] * 3
    for _ in range(3):
        with pytest.raises(InvalidAddress):
            normalize_address("a@b..example")
