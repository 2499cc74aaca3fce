"""A state URL shown without its passwords, and those passwords among the secrets logs scrub."""

from __future__ import annotations

import pytest

from connector.settings import Settings
from connector.state_url import safe_url, url_passwords

SECRET = "pgsecretpw"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            f"postgresql+psycopg://u@127.0.0.1:1/db?password={SECRET}",
            "postgresql+psycopg://u@127.0.0.1:1/db?password=***",
        ),
        (
            f"postgresql+psycopg://user:pg@{SECRET}@127.0.0.1:1/db",  # an unencoded @
            "postgresql+psycopg://user:***@127.0.0.1:1/db",
        ),
        (
            f"postgresql://u:{SECRET}@[::1]:5432/db?sslmode=require&sslpassword={SECRET}",
            "postgresql://u:***@[::1]:5432/db?sslmode=require&sslpassword=***",
        ),
        (
            f"postgresql://h/db?user=u&PASSWORD={SECRET}&application_name=me@host",
            "postgresql://h/db?user=u&PASSWORD=***&application_name=me@host",
        ),
        ("postgresql+psycopg://u@h/db", "postgresql+psycopg://u@h/db"),
        ("sqlite+pysqlite:///state/connector.db", "sqlite+pysqlite:///state/connector.db"),
    ],
)
def test_a_url_is_shown_without_any_of_its_passwords(url: str, shown: str) -> None:
    assert safe_url(url) == shown
    assert SECRET not in safe_url(url)


def test_the_state_urls_password_is_among_the_secrets_logs_scrub() -> None:
    query = Settings(state_url=f"postgresql+psycopg://u@h/db?password={SECRET}")
    userinfo = Settings(state_url=f"postgresql+psycopg://u:{SECRET}%21@h/db")
    unencoded = Settings(state_url=f"postgresql+psycopg://u:pg@{SECRET}@h/db")
    assert SECRET in query.secrets()
    assert {f"{SECRET}%21", f"{SECRET}!"} <= set(userinfo.secrets())
    # A driver takes what follows the first @ for the host name, and its messages show it.
    assert {f"pg@{SECRET}", SECRET} <= set(unencoded.secrets())
    assert url_passwords("sqlite:///state/connector.db") == []
