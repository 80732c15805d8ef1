#!/usr/bin/env bash
# Each role's extra installs in a clean virtual environment, from the project's wheel as the images do, and
# runs what that role's image runs (scripts/check_extras_roles.py):
#   batch   — `.[batch]` alone: synth → ingest → products → publish (and publish --verify);
#   serve   — `.[serve]` alone: every Lambda handler imports and answers over that catalogue;
#   pgstac  — added to both, as the images install it: the catalogue published into a real pgstac by the
#             batch venv, then searched through the STAC handler of the serve venv.
# Usage: bash scripts/check_extras.sh   (the pip cache is used; nothing is taken from the development .venv)
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
PYTHON=${PYTHON:-python3}
BASE=$(mktemp -d /tmp/ocsge-extras.XXXXXX)
chmod 755 "$BASE"  # PostgreSQL runs as the postgres user and must reach its socket folder under /tmp only
trap 'rm -rf "$BASE"' EXIT

log() { printf '\033[1;35m[extras]\033[0m %s\n' "$*" >&2; }

"$REPO/.venv/bin/python" -m pip wheel -q --no-deps --no-build-isolation -w "$BASE/wheel" "$REPO"
WHEEL=$(ls "$BASE"/wheel/ocsge_cloud-*.whl)

clean_venv() {  # clean_venv NAME EXTRAS
  local env="$BASE/$1"
  log "$1: clean venv with [$2]"
  "$PYTHON" -m venv "$env"
  "$env/bin/python" -m pip install -q --upgrade pip
  # torch first, pinned: the local CPU build (a bare requirement would pull the CUDA packages)
  if [[ $2 == *batch* ]]; then "$env/bin/python" -m pip install -q torch==2.13.0; fi
  "$env/bin/python" -m pip install -q "${WHEEL}[$2]"
}

ROOT="$BASE/root"
clean_venv batch batch
(cd "$BASE" && batch/bin/python "$REPO/scripts/check_extras_roles.py" batch "$ROOT")
clean_venv serve serve
(cd "$BASE" && serve/bin/python "$REPO/scripts/check_extras_roles.py" serve "$ROOT")
# The images add the pgstac extra to their role's (`.[batch,pgstac]`, `.[serve,pgstac]`): publish into a real
# pgstac from the batch venv, then the STAC handler of the serve venv searches it.
log "pgstac: adding [pgstac] to both"
"$BASE/batch/bin/python" -m pip install -q "${WHEEL}[batch,pgstac]"
"$BASE/serve/bin/python" -m pip install -q "${WHEEL}[serve,pgstac]"
(cd "$BASE" && batch/bin/python "$REPO/scripts/check_extras_roles.py" pgstac "$ROOT" "$BASE/serve/bin/python")
log "ok: each extra installs alone and runs its image's verbs"
