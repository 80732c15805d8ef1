"""Lambda: download listings and presigned URLs, commune statistics (``/downloads/*``, ``/stats/*``)."""

from services.downloads.app import create_app
from services.handlers.runtime import lambda_handler

app = create_app(with_stats=True)
handler = lambda_handler(app, "downloads")
