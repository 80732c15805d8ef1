"""Lambda: the STAC API (``/stac/*``), over the catalogue backend of the settings (embedded snapshot or
pgstac); the backend is opened once per container. The app is mounted under ``/stac`` as in the
all-in-one server, so that the links it writes carry the prefix CloudFront routes on. The bare ``/stac``
redirects relatively to ``/stac/`` (Starlette's own slash redirect is absolute, and would name the
execute-api host behind CloudFront)."""

from starlette.applications import Starlette
from starlette.routing import Mount, Route

from catalog.search.backends import open_backend
from ocsge.settings import get_settings
from services.handlers.runtime import lambda_handler
from services.stac.app import create_stac_app
from services.urls import add_trailing_slash

settings = get_settings()
stac = create_stac_app(open_backend(settings=settings), settings)
app = Starlette(routes=[Route("/stac", add_trailing_slash), Mount("/stac", app=stac)])
handler = lambda_handler(app, "stac")
