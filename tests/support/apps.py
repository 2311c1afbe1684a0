"""The apps the suite serves (tests/apps/, the seed app in app/) and the corpus of projects written for
tiangolo's image (tests/corpus/)."""

from __future__ import annotations

import re

from .spawn import REPO

SEED_APP = (REPO / "app" / "main.py").read_text()
PROBE_APP = (REPO / "tests" / "apps" / "probe.py").read_text()
OPS_APP = (REPO / "tests" / "apps" / "ops.py").read_text()
# The gunicorn_conf.py files of users that the custom config tests put in tiangolo's places for one.
CONFIGS = REPO / "tests" / "apps" / "configs"
CORPUS = REPO / "tests" / "corpus"
TIANGOLO_FROM = re.compile(r"^FROM tiangolo/uvicorn-gunicorn-fastapi:(\S+)$", re.MULTILINE)
