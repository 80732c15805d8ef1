"""Lambda: the web viewer's static files (``/`` and its assets; CloudFront caches them)."""

from services.handlers.runtime import lambda_handler
from services.viewer.app import create_app

app = create_app()
handler = lambda_handler(app, "viewer")
