#!/usr/bin/env bash
# Regenerate the locks from the *.in files: every package pinned, with the hashes of all its files on
# PyPI, valid for every Python the image supports (3.11 and newer) and platform. The builder stage
# installs them with --require-hashes. Run it after editing requirements.in , requirements-sbom.in or requirements-test.in.
set -euo pipefail
cd "$(dirname "$0")/.."
uv=.venv/bin/uv
[ -x "$uv" ] || uv=uv
for name in requirements requirements-sbom requirements-test; do
  "$uv" pip compile --quiet --universal --python-version 3.11 --generate-hashes \
    --custom-compile-command scripts/lock.sh "$name.in" -o "$name.txt"
done
