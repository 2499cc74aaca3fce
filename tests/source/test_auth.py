"""Every login mode against the emulator's OAuth endpoint, with the real simple-salesforce."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import SecretStr

from connector.errors import ConfigError, SourceError
from connector.settings import SalesforceSettings
from connector.source.auth import connect
from connector_sandbox.faults import Fault
from connector_sandbox.salesforce import certificate_pem
from connector_sandbox.stack import Sandbox
from tests.cli.conftest import invoke
from tests.conftest import MAPPING
from tests.sandbox_env import SECRETS, sandbox_env


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


def write_key(path: Path, key: rsa.RSAPrivateKey) -> Path:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


def new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


APP_KEY = new_key()


def jwt_settings(box: Sandbox, tmp_path: Path, **update: object) -> SalesforceSettings:
    box.salesforce.certificate = certificate_pem(APP_KEY)  # uploaded to the connected app
    pem = write_key(tmp_path / "key.pem", APP_KEY)
    settings = base(box, tmp_path).model_copy(
        update={"password": None, "client_secret": None, "private_key_file": pem}
    )
    return settings.model_copy(update=update)


def test_jwt_bearer_login(sandbox: Sandbox, tmp_path: Path) -> None:
    query_ok(jwt_settings(sandbox, tmp_path))


@pytest.mark.parametrize(
    ("wrong", "error"),
    [
        ("key", "invalid_grant (invalid assertion: signature does not verify)"),
        ("issuer", "invalid_client_id (client identifier invalid)"),
        ("user", "invalid_grant (authentication failure)"),
        # Same server under another name: the assertion names a login server it does not serve.
        ("audience", "invalid_grant (audience is invalid)"),
    ],
)
def test_jwt_login_with_a_wrong_key_issuer_or_audience_is_refused_clearly(
    sandbox: Sandbox, tmp_path: Path, wrong: str, error: str
) -> None:
    settings = jwt_settings(sandbox, tmp_path)
    if wrong == "key":
        write_key(tmp_path / "key.pem", new_key())  # not the certificate's key
    overrides = {
        "issuer": {"client_id": "other-consumer-key"},
        "user": {"username": "x@y.com"},
        "audience": {"login_url": settings.login_url.replace("127.0.0.1", "localhost")},
    }
    settings = settings.model_copy(update=overrides.get(wrong, {}))
    with pytest.raises(ConfigError) as info:  # a setting to fix, not an outage to wait out
        connect(settings)
    message = str(info.value)
    assert error in message
    assert "PRIVATE_KEY_FILE is the key of the certificate uploaded" in message
    assert "PRIVATE KEY" not in message


def test_a_key_file_that_is_no_key_is_a_configuration_error(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    settings = jwt_settings(sandbox, tmp_path)
    settings.private_key_file.write_text("not a key")  # type: ignore[union-attr]
    with pytest.raises(ConfigError, match="PRIVATE_KEY_FILE is not an unencrypted PEM RSA"):
        connect(settings)


def test_session_id_login(sandbox: Sandbox, tmp_path: Path) -> None:
    first = connect(base(sandbox, tmp_path))
    settings = base(sandbox, tmp_path).model_copy(
        update={"session_id": SecretStr(first.session_id), "instance_url": sandbox.salesforce.url}
    )
    query_ok(settings)


@pytest.mark.parametrize(
    ("wrong", "error"),
    [
        ({"password": SecretStr("wrongpassword9")}, "invalid_grant (authentication failure)"),
        ({"username": "someone@else.com"}, "invalid_grant (authentication failure)"),
        ({"client_secret": SecretStr("wrong-secret-7")}, "invalid_client (invalid client"),
        ({"client_id": "other-consumer-key"}, "invalid_client_id (client identifier invalid)"),
    ],
)
def test_a_refused_login_is_a_configuration_error_naming_the_settings(
    sandbox: Sandbox, tmp_path: Path, wrong: dict[str, object], error: str
) -> None:
    settings = base(sandbox, tmp_path).model_copy(update=wrong)
    with pytest.raises(ConfigError) as info:
        connect(settings)
    message = str(info.value)
    assert f"Salesforce login at {settings.login_url} refused: {error}" in message
    for name in ("USERNAME", "__PASSWORD", "__SECURITY_TOKEN", "__CLIENT_ID", "__CLIENT_SECRET"):
        assert name in message
    assert info.value.exit_code == 2
    for secret in ("wrongpassword9", "wrong-secret-7", *SECRETS):
        assert secret not in message


@pytest.mark.parametrize(
    "answer",
    [Fault(status=404), Fault(status=200, body={"hello": "not Salesforce"})],
    ids=["no-token-endpoint", "200-without-a-session"],
)
def test_a_login_url_that_is_not_salesforces_is_a_configuration_error(
    sandbox: Sandbox, tmp_path: Path, answer: Fault
) -> None:
    sandbox.salesforce.faults.push(replace(answer, path_contains="/oauth2/token"))
    with pytest.raises(ConfigError, match="__LOGIN_URL") as info:
        connect(base(sandbox, tmp_path))
    assert info.value.exit_code == 2


def test_a_failing_token_endpoint_is_a_source_error_to_retry(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    sandbox.salesforce.faults.push(Fault(status=503, path_contains="/oauth2/token"), times=3)
    with pytest.raises(SourceError, match="failed after retries: it answered 503") as info:
        connect(base(sandbox, tmp_path))
    assert info.value.retryable and info.value.exit_code == 3
    assert len(sandbox.salesforce.faults) == 0  # tried three times


def test_an_unreachable_token_endpoint_is_a_source_error_to_retry(tmp_path: Path) -> None:
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    settings = SalesforceSettings(
        login_url=f"https://127.0.0.1:{port}",
        username="demo@example.com",
        password=SecretStr("pw"),
        client_id="demo-client-id",
        client_secret=SecretStr("secret"),
    )
    with pytest.raises(SourceError, match="cannot reach it") as info:
        connect(settings)
    assert info.value.retryable and info.value.exit_code == 3


def test_sync_with_a_wrong_password_exits_2_not_3(sandbox: Sandbox, tmp_path: Path) -> None:
    # The reviewer's case: a scheduler reruns exit 3 forever, and alerts on exit 2.
    env = sandbox_env(sandbox, f"sqlite:///{tmp_path / 's.db'}")
    env |= {"CONNECTOR_SALESFORCE__PASSWORD": "wrongpassword9", "CONNECTOR_LOG_FORMAT": "json"}
    result = invoke("sync", "--json", env=env)
    assert result.exit_code == 2, result.stdout + result.stderr
    assert "invalid_grant" in result.stderr and "CONNECTOR_SALESFORCE__USERNAME" in result.stderr
    assert "wrongpassword9" not in result.stdout + result.stderr
