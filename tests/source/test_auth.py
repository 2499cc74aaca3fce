"""Every login mode against the emulator's OAuth endpoint, with the real simple-salesforce."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import SecretStr

from connector.errors import SourceError
from connector.settings import SalesforceSettings
from connector.source.auth import connect
from connector_sandbox.stack import Sandbox
from tests.conftest import MAPPING


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox({"Lead": [], "LeadHistory": []}) as box:
        yield box


def base(box: Sandbox, tmp_path: Path) -> SalesforceSettings:
    return box.settings(f"sqlite:///{tmp_path}/s.db", MAPPING).salesforce


def query_ok(settings: SalesforceSettings) -> None:
    client = connect(settings)
    assert client.query("SELECT Id FROM Lead")["totalSize"] == 0


def test_password_login(sandbox: Sandbox, tmp_path: Path) -> None:
    query_ok(base(sandbox, tmp_path))


def test_jwt_bearer_login(sandbox: Sandbox, tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = tmp_path / "key.pem"
    pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    settings = base(sandbox, tmp_path).model_copy(
        update={"password": None, "client_secret": None, "private_key_file": pem}
    )
    query_ok(settings)


def test_session_id_login(sandbox: Sandbox, tmp_path: Path) -> None:
    first = connect(base(sandbox, tmp_path))
    settings = base(sandbox, tmp_path).model_copy(
        update={"session_id": SecretStr(first.session_id), "instance_url": sandbox.salesforce.url}
    )
    query_ok(settings)


def test_wrong_password_is_a_clear_source_error(sandbox: Sandbox, tmp_path: Path) -> None:

    settings = base(sandbox, tmp_path).model_copy(update={"password": SecretStr("nope")})
    with pytest.raises(SourceError, match="invalid_grant") as info:
        connect(settings)
    assert "nope" not in str(info.value)
