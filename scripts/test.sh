#!/usr/bin/env bash
# Set up (idempotent), then lint, check each role's extra, and run the whole test suite.
# Extra arguments go to pytest.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh || exit 1
.venv/bin/ruff check . || exit 1
# Each role's extra alone in a clean virtual environment, running its image's verbs (several minutes;
# OCSGE_SKIP_EXTRAS=1 skips it while iterating — CI always runs it). Before pytest, so that pytest's
# summary closes the output.
if [ -z "${OCSGE_SKIP_EXTRAS:-}" ] || [ -n "${CI:-}" ]; then
  bash scripts/check_extras.sh || exit 1
fi
.venv/bin/python -m pytest "$@"
rc=$?
if [ $rc -eq 5 ]; then
  echo "pytest collected no tests: failing on purpose" >&2
  exit 1
fi
exit $rc
