"""Who may write on AWS: a Cognito user pool, its app client and one group per consolidation role.

The consolidation API checks the pool's RS256 tokens against its JWKS with the same code as local tokens
(``services/consolidation/auth.py``): the issuer is the pool's URL, the audience the app client id (``aud``
of ID tokens, ``client_id`` of access tokens), and the ``cognito:groups`` claim gives the role — the
highest of ``contributor`` < ``interpreter`` < ``reviewer`` < ``admin`` the user belongs to. Accounts are
created by administrators (no self sign-up); reading published data needs no account at all.

:attr:`AuthStack.api_environment` is what the consolidation function's configuration needs
(``OCSGE_CONSOLIDATION_OIDC_*``).
"""

from __future__ import annotations

from aws_cdk import CfnOutput, Duration, RemovalPolicy, Stack
from aws_cdk import aws_cognito as cognito
from constructs import Construct

from infra.config import InfraConfig

# (group, precedence): Cognito puts the group of lowest precedence in the tokens' preferred role.
ROLE_GROUPS: tuple[tuple[str, int], ...] = (("admin", 0), ("reviewer", 1), ("interpreter", 2), ("contributor", 3))
MIN_PASSWORD_LENGTH = 12


class ConsolidationAuth(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, config: InfraConfig) -> None:
        super().__init__(scope, construct_id)
        self.user_pool = cognito.UserPool(
            self,
            "Users",
            user_pool_name=f"ocsge-{config.env_name}-consolidation",
            self_sign_up_enabled=False,  # accounts are made by an administrator, as `ocsge accounts` does locally
            sign_in_aliases=cognito.SignInAliases(username=True, email=True),
            sign_in_case_sensitive=False,
            password_policy=cognito.PasswordPolicy(
                min_length=MIN_PASSWORD_LENGTH,
                require_digits=True,
                require_lowercase=True,
                require_uppercase=False,
                require_symbols=False,
                temp_password_validity=Duration.days(3),
            ),
            mfa=cognito.Mfa.OPTIONAL,
            mfa_second_factor=cognito.MfaSecondFactor(sms=False, otp=True),
            account_recovery=cognito.AccountRecovery.EMAIL_ONLY,
            deletion_protection=True,
            removal_policy=RemovalPolicy.RETAIN,  # the accounts outlive a stack update gone wrong
        )
        self.client = self.user_pool.add_client(
            "Viewer",
            user_pool_client_name=f"ocsge-{config.env_name}-viewer",
            generate_secret=False,  # a browser application keeps no secret
            auth_flows=cognito.AuthFlow(user_srp=True),
            prevent_user_existence_errors=True,
            access_token_validity=Duration.hours(1),
            id_token_validity=Duration.hours(1),
            refresh_token_validity=Duration.days(30),
            enable_token_revocation=True,
        )
        for name, precedence in ROLE_GROUPS:
            cognito.CfnUserPoolGroup(
                self,
                f"Group{name.capitalize()}",
                user_pool_id=self.user_pool.user_pool_id,
                group_name=name,
                precedence=precedence,
                description=f"OCS GE consolidation: {name}",
            )

    @property
    def issuer(self) -> str:
        return f"https://cognito-idp.{Stack.of(self).region}.amazonaws.com/{self.user_pool.user_pool_id}"


class AuthStack(Stack):
    """The consolidation API's identity provider (Cognito), with the values its function needs as outputs."""

    def __init__(self, scope: Construct, construct_id: str, *, config: InfraConfig, **kwargs: object) -> None:
        super().__init__(scope, construct_id, **kwargs)  # type: ignore[arg-type]
        self.auth = ConsolidationAuth(self, "Consolidation", config=config)
        issuer = self.auth.issuer
        self.api_environment = {
            "OCSGE_CONSOLIDATION_OIDC_ISSUER": issuer,
            "OCSGE_CONSOLIDATION_OIDC_AUDIENCE": self.auth.client.user_pool_client_id,
            "OCSGE_CONSOLIDATION_OIDC_JWKS_URL": f"{issuer}/.well-known/jwks.json",
            "OCSGE_CONSOLIDATION_OIDC_GROUPS_CLAIM": "cognito:groups",
            "OCSGE_CONSOLIDATION_COOKIE_SECURE": "1",
        }
        CfnOutput(self, "UserPoolId", value=self.auth.user_pool.user_pool_id)
        CfnOutput(self, "AppClientId", value=self.auth.client.user_pool_client_id)
        CfnOutput(self, "Issuer", value=issuer)
        CfnOutput(self, "JwksUrl", value=self.api_environment["OCSGE_CONSOLIDATION_OIDC_JWKS_URL"])
