"""Lambda: the STAC API (``/stac/*``), over the catalogue backend of the settings (embedded snapshot or
pgstac); the backend is opened once per container. The app is mounted under ``/stac`` as in the
all-in-one server, so that the links it writes carry the prefix CloudFront routes on."""

from starlette.applications import Starlette
from starlette.routing import Mount

from catalog.search.backends import open_backend
from services.handlers.runtime import lambda_handler
from services.stac.app import create_stac_app

stac = create_stac_app(open_backend())
app = Starlette(routes=[Mount("/stac", app=stac)])
handler = lambda_handler(app, "stac")
