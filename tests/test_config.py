"""Settings from the environment."""

import pytest

from emailsvc.config import load_config


def test_defaults_are_the_contracts():
    config = load_config({})
    assert config["DATABASE_READ_URL"] == config["DATABASE_URL"] == "postgresql://postgres@127.0.0.1:5432/emailsvc"
    assert config["EMAIL_RETRY_INTERVALS"] == [10, 60, 300] and config["SMTP_SECURITY"] == "none"


def test_smtp_security_is_read_leniently_but_a_typo_refuses_to_start():
    assert load_config({"SMTP_SECURITY": " STARTTLS "})["SMTP_SECURITY"] == "starttls"
    with pytest.raises(ValueError, match="SMTP_SECURITY"):
        load_config({"SMTP_SECURITY": "tls"})  # would otherwise send SMTP_PASSWORD in the clear


def test_smtp_max_connections_follows_the_concurrency_unless_set():
    assert load_config({})["SMTP_CONCURRENCY"] == load_config({})["SMTP_MAX_CONNECTIONS"] == 16
    config = load_config({"SMTP_CONCURRENCY": "8", "SMTP_MAX_CONNECTIONS": "3"})
    assert (config["SMTP_CONCURRENCY"], config["SMTP_MAX_CONNECTIONS"]) == (8, 3)
    assert load_config({"SMTP_CONCURRENCY": "4"})["SMTP_MAX_CONNECTIONS"] == 4
    for bad in ({"SMTP_CONCURRENCY": "0"}, {"SMTP_MAX_CONNECTIONS": "0"}):
        with pytest.raises(ValueError, match="at least 1"):  # no loop, or no connection: nothing would ever be sent
            load_config(bad)


def test_allowed_sender_domains_are_read_in_their_ascii_form():
    config = load_config({"EMAIL_ALLOWED_FROM_DOMAINS": "Bücher.Example, shop.example., xn--caf-dma.example"})
    assert config["EMAIL_ALLOWED_FROM_DOMAINS"] == ["xn--bcher-kva.example", "shop.example", "xn--caf-dma.example"]
    with pytest.raises(ValueError, match="domain"):
        load_config({"EMAIL_ALLOWED_FROM_DOMAINS": "bad..domain"})


def test_special_use_names_are_accepted_unless_refused_by_the_setting():
    assert load_config({})["EMAIL_REJECT_SPECIAL_USE"] is False
    assert load_config({"EMAIL_REJECT_SPECIAL_USE": " True "})["EMAIL_REJECT_SPECIAL_USE"] is True


def test_the_page_is_off_without_a_secret_key_and_a_short_one_refuses_to_start():
    config = load_config({})
    assert config["SECRET_KEY"] == "" and config["SESSION_COOKIE_SECURE"] is True and config["DEV_MAIL_DIR"] == ""
    with pytest.raises(ValueError, match="SECRET_KEY"):
        load_config({"SECRET_KEY": "hunter2"})
    assert load_config({"SECRET_KEY": "k" * 32, "SESSION_COOKIE_SECURE": "false"})["SESSION_COOKIE_SECURE"] is False
