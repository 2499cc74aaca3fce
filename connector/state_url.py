"""How a state URL is shown, and which passwords it carries (for messages and log redaction).

Kept apart from the ledger (no SQLAlchemy): the settings and `connector check` use it too.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

# libpq reads a password from the query too (`?password=`, `?sslpassword=` for the key).
_PASSWORD_PARAM = re.compile(r"(?P<key>[?&][^=&#]*password=)(?P<value>[^&#]*)", re.IGNORECASE)
SHORTEST_SECRET = 4  # as the log filter: a shorter value would blank ordinary words


def safe_url(url: str) -> str:
    """The URL without its passwords: `postgresql://user:***@host/db?password=***`."""
    scheme, userinfo, rest = _split_userinfo(url)
    if userinfo is not None:
        user, colon, _password = userinfo.partition(":")
        rest = f"{user}{':***' if colon else ''}@{rest}"
    return _PASSWORD_PARAM.sub(r"\g<key>***", scheme + rest)


def url_passwords(url: str) -> list[str]:
    """Every password `url` carries (after `user:` and in `?password=`), as written and
    decoded, and each part of one around an unencoded @ (a driver reads the part after it
    as the host name, which its messages then show): what logs and errors must not show."""
    userinfo = userinfo_password(url)
    written = [userinfo, *(match["value"] for match in _PASSWORD_PARAM.finditer(url))]
    parts = userinfo.split("@") if "@" in userinfo else []
    found = [*written, *(unquote(value) for value in written), *parts]
    return [value for value in dict.fromkeys(found) if value]


def userinfo_password(url: str) -> str:
    _scheme, userinfo, _rest = _split_userinfo(url)
    return (userinfo or "").partition(":")[2]


def _split_userinfo(url: str) -> tuple[str, str | None, str]:
    """`scheme://`, the userinfo (None without an @) and the rest. The userinfo ends at the
    last @, not the first: a password may hold an unencoded one, and it is all hidden."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    userinfo, at, host = rest.rpartition("@")
    return scheme + sep, (userinfo if at else None), host
