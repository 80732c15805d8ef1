"""Serving a stored object over HTTP with Range support (COGs, PMTiles and archives read by clients).

One implementation for every route that hands out a file: HEAD, whole-file GET (streamed, or a presigned
redirect on S3 above a size), single byte ranges (206, 416 when unsatisfiable), ETag and Cache-Control.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from fastapi import Request
from fastapi.responses import RedirectResponse, Response, StreamingResponse

from ocsge.storage import S3Storage, Storage

MAX_RANGE = 8 << 20  # one range response stays under the Lambda payload limit
REDIRECT_ABOVE = 5 << 20  # whole-file GETs on S3 above this go to a presigned URL
CHUNK = 1 << 20
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def serve_object(request: Request, storage: Storage, key: str, media_type: str,
                 cache_control: str = "public, max-age=3600", extra_headers: dict[str, str] | None = None) -> Response:
    info = storage.stat(key)
    size = info.size
    headers = {"Accept-Ranges": "bytes", "ETag": f'"{info.etag or size}"', "Cache-Control": cache_control,
               "Content-Type": media_type, **(extra_headers or {})}
    spec = request.headers.get("range")
    if spec is None:
        if request.method == "HEAD":
            return Response(headers={**headers, "Content-Length": str(size)})
        if isinstance(storage, S3Storage) and size > REDIRECT_ABOVE:
            return RedirectResponse(storage.presigned_url(key), status_code=307, headers={"Cache-Control": "no-store"})

        def chunks() -> Iterator[bytes]:
            for offset in range(0, size, CHUNK):
                yield storage.get_range(key, offset, min(CHUNK, size - offset))

        return StreamingResponse(chunks(), headers={**headers, "Content-Length": str(size)})
    m = _RANGE.match(spec.strip())
    if not m or (not m[1] and not m[2]):
        return Response(status_code=416, headers={"Content-Range": f"bytes */{size}"})
    if m[1]:
        start = int(m[1])
        end = min(int(m[2]), size - 1) if m[2] else size - 1
    else:
        start, end = max(0, size - int(m[2])), size - 1
    if start >= size or end < start:
        return Response(status_code=416, headers={"Content-Range": f"bytes */{size}"})
    end = min(end, start + MAX_RANGE - 1)
    body = b"" if request.method == "HEAD" else storage.get_range(key, start, end - start + 1)
    return Response(body, status_code=206, headers={**headers, "Content-Range": f"bytes {start}-{end}/{size}",
                                                     "Content-Length": str(end - start + 1)})
