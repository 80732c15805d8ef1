"""Lambda: the consolidation API (``/consolidation/*``) over PostgreSQL (``OCSGE_CONSOLIDATION_DSN``) and the
OIDC issuer of the settings (Cognito), mounted under ``/consolidation`` as in the all-in-one server."""

from starlette.applications import Starlette
from starlette.routing import Mount, Route

from services.consolidation.app import create_app_from_settings
from services.handlers.runtime import lambda_handler
from services.urls import add_trailing_slash

consolidation = create_app_from_settings()
app = Starlette(routes=[Route("/consolidation", add_trailing_slash), Mount("/consolidation", app=consolidation)])
handler = lambda_handler(app, "consolidation")
