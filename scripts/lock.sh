#!/usr/bin/env bash
# Regenerate the locks from the *.in files: every package pinned, with the hashes of all its files on
# the index, valid for every Python the image supports (3.11 and newer) and platform. Every lock is
# complete, so it is installed with `pip install --no-deps --require-hashes`: nothing is resolved at
# install time, whatever the pip. Run it after editing any *.in file; existing pins are kept (add
# --upgrade to move them).
set -euo pipefail
cd "$(dirname "$0")/.."
uv=.venv/bin/uv
[ -x "$uv" ] || uv=uv
for name in requirements requirements-sbom requirements-test requirements-tools \
  examples/poetry-uv/requirements-poetry examples/poetry-uv/requirements-uv; do
  "$uv" pip compile --quiet --universal --python-version 3.11 --generate-hashes \
    --custom-compile-command scripts/lock.sh "$@" "$name.in" -o "$name.txt"
done
