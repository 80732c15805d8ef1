"""The Cognito user pool of the consolidation API, on the synthesised template: administrators create the
accounts, one group per role, a browser client without secret, and the values the API checks tokens with."""

from __future__ import annotations

from typing import Any

import pytest

from infra.auth import MIN_PASSWORD_LENGTH, ROLE_GROUPS

pytestmark = pytest.mark.timeout(300)


def test_user_pool_is_admin_managed_and_kept(synthesised: Any) -> None:
    pools = synthesised.resources("Auth", "AWS::Cognito::UserPool")
    assert len(pools) == 1
    pool = next(iter(pools.values()))
    props = pool["Properties"]
    assert props["AdminCreateUserConfig"]["AllowAdminCreateUserOnly"] is True  # no self sign-up
    assert props["Policies"]["PasswordPolicy"]["MinimumLength"] == MIN_PASSWORD_LENGTH
    assert props["DeletionProtection"] == "ACTIVE" and pool["DeletionPolicy"] == "Retain"
    assert props["MfaConfiguration"] == "OPTIONAL"


def test_one_group_per_role_with_the_role_order(synthesised: Any) -> None:
    groups = synthesised.resources("Auth", "AWS::Cognito::UserPoolGroup")
    found = {g["Properties"]["GroupName"]: g["Properties"]["Precedence"] for g in groups.values()}
    assert found == dict(ROLE_GROUPS)
    # the names are the API's roles (services/consolidation: Role.parse)
    from ocsge.consolidation.model import Role

    assert sorted(Role.parse(name) for name in found) == sorted(Role)


def test_browser_client_has_no_secret_and_revocable_tokens(synthesised: Any) -> None:
    clients = synthesised.resources("Auth", "AWS::Cognito::UserPoolClient")
    assert len(clients) == 1
    props = next(iter(clients.values()))["Properties"]
    assert props.get("GenerateSecret", False) is False
    assert props["PreventUserExistenceErrors"] == "ENABLED" and props["EnableTokenRevocation"] is True
    assert "ALLOW_USER_SRP_AUTH" in props["ExplicitAuthFlows"]
    assert "ALLOW_USER_PASSWORD_AUTH" not in props["ExplicitAuthFlows"]


def test_outputs_give_what_the_api_checks_tokens_with(synthesised: Any) -> None:
    outputs = synthesised.templates["Auth"]["Outputs"]
    assert {"UserPoolId", "AppClientId", "Issuer", "JwksUrl"} <= set(outputs)
    issuer = outputs["Issuer"]["Value"]["Fn::Join"][1]
    assert "https://cognito-idp." in issuer and ".amazonaws.com/" in issuer
    jwks = outputs["JwksUrl"]["Value"]["Fn::Join"][1]
    assert jwks[-1] == "/.well-known/jwks.json"
