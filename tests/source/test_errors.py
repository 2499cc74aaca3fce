"""Salesforce errors from the real client, as the emulator raises them, translated for the run."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from simple_salesforce.api import Salesforce
from simple_salesforce.exceptions import SalesforceMalformedRequest

from connector.errors import ConfigError, SourceError
from connector.source.auth import connect
from connector.source.errors import source_error
from connector_sandbox.stack import Sandbox
from tests.conftest import MAPPING


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Salesforce]:
    state = tmp_path_factory.mktemp("errors") / "s.db"
    with Sandbox({"Lead": [{"Email": "a@b.example"}], "LeadHistory": []}) as box:
        yield connect(box.settings(f"sqlite:///{state}", MAPPING).salesforce)


def refused(client: Salesforce, soql: str) -> SalesforceMalformedRequest:
    with pytest.raises(SalesforceMalformedRequest) as info:
        client.query(soql)
    return info.value


@pytest.mark.parametrize(
    ("soql", "field"),
    [
        ("SELECT Id, GCLID_Typo__c FROM Lead", "'GCLID_Typo__c' on Lead"),
        ("SELECT Id, Owner__r.Name FROM Lead", "'Owner__r'"),
    ],
)
def test_a_field_the_org_lacks_is_a_configuration_error_naming_it(
    client: Salesforce, soql: str, field: str
) -> None:
    error = source_error(refused(client, soql))
    assert isinstance(error, ConfigError)
    assert f"Salesforce has no field {field}" in str(error)
    assert "SELECT" not in str(error)


def test_other_query_errors_never_repeat_the_query(client: Salesforce) -> None:
    error = source_error(refused(client, "SELECT Id FROM Lead WHERE Email = 'a@b.example' AND"))
    assert isinstance(error, SourceError) and not error.retryable
    assert "SELECT" not in str(error) and "a@b.example" not in str(error)
    assert "Salesforce rejected the query (400): MALFORMED_QUERY: " in str(error)


def test_the_missing_field_fix_points_at_the_mapping(client: Salesforce) -> None:
    error = source_error(refused(client, "SELECT Nope__c FROM Lead"))
    assert "fix its name in the mapping" in str(error)
    assert "connector check --online" in str(error)
