#!/usr/bin/env bash
# Set up everything the project needs on a fresh Debian machine (Python 3.11+), idempotently:
# Debian packages (PostgreSQL + PostGIS for pgstac, Chromium for the viewer tests, PyQGIS for the QGIS client
# test, Node.js for the viewer build), a virtual environment in .venv with torch (CPU build, installed first)
# and every extra.
# Re-running is fast: each part is skipped when already in place.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
# python3-qgis: QGIS 3.22 (Debian 12), ~3 min to install, for tests/services/test_client_qgis.py
APT_PACKAGES=(postgresql-15-postgis-3 chromium chromium-driver python3-qgis)

log() { printf '\033[1;36m[setup]\033[0m %s\n' "$*" >&2; }

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if ! "$PYTHON" -c "import ensurepip, venv" >/dev/null 2>&1; then missing+=(python3-venv); fi
command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)
if [ ${#missing[@]} -gt 0 ]; then
  if command -v apt-get >/dev/null 2>&1; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    log "installing Debian packages: ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
  else
    log "warning: apt-get not found; install by hand: ${missing[*]}"
  fi
fi

"$PYTHON" - <<'PY' || { echo "Python >= 3.11 is required (set PYTHON=...)" >&2; exit 1; }
import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)
PY

stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -f "$stamp" ]; then
  [ -x .venv/bin/python ] || { log "creating .venv"; "$PYTHON" -m venv .venv; }
  .venv/bin/python -m pip install -q --upgrade pip
  # torch first, pinned: the local CPU build. A bare requirement would pull several GB of CUDA packages.
  log "installing torch 2.13.0 (CPU)"
  .venv/bin/python -m pip install -q torch==2.13.0
  log "installing the project with all extras"
  .venv/bin/python -m pip install -q -e '.[batch,serve,pgstac,infra,dev]'
  rm -f .venv/.installed-*
  touch "$stamp"
fi

if [ -f services/viewer/package.json ]; then
  (cd services/viewer && bash build.sh)
fi
log "ready: .venv/bin/ocsge --help"
