#!/usr/bin/env bash
# Build the viewer's vendored dependencies from npm (no CDN at run time): MapLibre GL JS and pmtiles, and
# OpenLayers' full build (ol.js, for the OpenLayers client test: tests/services/test_client_openlayers.py),
# pinned in package.json / package-lock.json, copied into static/vendor/ (git-ignored).
# Idempotent: skipped when static/vendor/ was built from the same lock file.
set -euo pipefail
cd "$(dirname "$0")"

VENDOR=static/vendor
lock_hash=$( (cat package.json; cat package-lock.json 2>/dev/null || true) | sha256sum | cut -c1-16)
if [ -f "$VENDOR/.built-$lock_hash" ]; then
  exit 0
fi
command -v npm >/dev/null 2>&1 || { echo "viewer build: npm not found (install nodejs and npm)" >&2; exit 1; }
if [ -f package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
else
  npm install --no-audit --no-fund --loglevel=error
fi
rm -rf "$VENDOR"
mkdir -p "$VENDOR"
cp node_modules/maplibre-gl/dist/maplibre-gl.mjs node_modules/maplibre-gl/dist/maplibre-gl-worker.mjs \
   node_modules/maplibre-gl/dist/maplibre-gl.css "$VENDOR/"
cp node_modules/maplibre-gl/LICENSE.txt "$VENDOR/maplibre-gl.LICENSE.txt"
cp node_modules/pmtiles/dist/pmtiles.js "$VENDOR/"
[ -f node_modules/pmtiles/LICENSE ] && cp node_modules/pmtiles/LICENSE "$VENDOR/pmtiles.LICENSE.txt"
cp node_modules/ol/dist/ol.js node_modules/ol/ol.css "$VENDOR/"
cp node_modules/ol/LICENSE.md "$VENDOR/ol.LICENSE.md"
touch "$VENDOR/.built-$lock_hash"
echo "viewer: vendored $(ls "$VENDOR" | grep -vc '^\.') files into services/viewer/$VENDOR" >&2
