"""The one line of advice next to errors a move from tiangolo's image causes (asgi_launcher/doctor.py),
and after a failed pip install (the image's pip: asgi_launcher/pipdoctor.py; its make: scripts/hints/make)."""

# ruff: noqa: RUF001 - the pip outputs below have the multiplication sign pip prints

from __future__ import annotations

import logging
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from support.proc import REPO

from asgi_launcher import pipdoctor
from asgi_launcher.doctor import Doctor, advice, build_advice, full_variant, tag
from asgi_launcher.pipdoctor import command


def raised(error: BaseException) -> BaseException:
    try:
        raise error
    except BaseException as caught:
        return caught


def test_a_missing_fastapi_all_package_names_it():
    error = ModuleNotFoundError("No module named 'multipart'", name="multipart")
    assert advice(error) == (
        "HINT: 'multipart' is not installed: add python-multipart to your requirements "
        "(tiangolo's image had it as part of fastapi[all])"
    )


def test_any_missing_module_through_the_import_chain():
    try:
        try:
            raise ModuleNotFoundError("No module named 'humanize.time'", name="humanize.time")
        except ImportError as error:
            raise RuntimeError("the app failed to import") from error
    except RuntimeError as error:
        hint = advice(error)
    assert hint == "HINT: 'humanize' is not installed: add the package that provides it to your requirements"


def test_starlettes_form_error():
    error = RuntimeError('Form data requires "python-multipart" to be installed.')
    assert "add python-multipart" in advice(error)


def test_a_permission_error_names_the_path_and_the_fixes():
    error = PermissionError(13, "Permission denied", "/app/data.db")
    hint = advice(error, uid=10001)
    assert "the app runs as UID 10001, not root as in tiangolo's image" in hint
    assert "RUN chown 10001 /app/data.db" in hint
    assert "APP_USER=root" in hint
    # As root the cause is elsewhere: no advice about users.
    assert advice(error, uid=0) is None


def test_sqlite_that_cannot_write_its_file():
    hint = advice(sqlite3.OperationalError("attempt to write a readonly database"), uid=10001)
    assert hint.startswith("HINT: SQLite could not write its file: the app runs as UID 10001")


def test_unrelated_errors_get_no_advice():
    assert advice(ValueError("bad value")) is None
    assert advice(sqlite3.IntegrityError("UNIQUE constraint failed")) is None
    assert advice(None) is None


def test_the_filter_appends_the_advice_and_keeps_the_traceback():
    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append((self.format(record), record))

    handler = Keep()
    handler.addFilter(Doctor())
    logger = logging.getLogger("test-doctor")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        error = raised(ModuleNotFoundError("No module named 'jinja2'", name="jinja2"))
        logger.error("Exception in worker %s", "process", exc_info=error)
        logger.error("no exception here")
    finally:
        logger.removeHandler(handler)
    (text, _), (plain, _) = records
    assert text.splitlines()[0] == (
        "Exception in worker process -- HINT: 'jinja2' is not installed: add jinja2 to your requirements "
        "(tiangolo's image had it as part of fastapi[all])"
    )
    assert "Traceback (most recent call last)" in text
    assert plain == "no exception here"


# ---- runtime errors of the move to a newer Python


def test_old_pydantic_on_a_newer_python_names_python311_of_the_same_variant():
    error = TypeError("ForwardRef._evaluate() missing 1 required keyword-only argument: 'recursive_guard'")
    assert advice(error, python=(3, 13), full=False) == (
        "HINT: pydantic older than 1.10.17 does not run on Python 3.13 (it calls ForwardRef._evaluate() "
        "the old way): pin pydantic>=1.10.17,<2, or use the python3.11-slim tag"
    )
    assert advice(error, python=(3, 12), full=True).endswith("or use the python3.11 tag")
    # On python3.11 there is no older tag to name.
    assert advice(error, python=(3, 11), full=True).endswith("pin pydantic>=1.10.17,<2")
    # Another TypeError is no pydantic's.
    assert advice(TypeError("unsupported operand type(s)"), python=(3, 13), full=False) is None


def test_distutils_on_python312_names_setuptools_and_python311():
    error = raised(ModuleNotFoundError("No module named 'distutils'", name="distutils.util"))
    assert advice(error, python=(3, 12), full=True) == (
        "HINT: 'distutils' is not in Python 3.12 and later: add setuptools to your requirements "
        "(it provides distutils), or use the python3.11 tag"
    )
    assert advice(error, python=(3, 14), full=False).endswith("or use the python3.11-slim tag")
    # Python 3.11 has distutils: missing there, it is any missing module.
    assert advice(error, python=(3, 11), full=True) == (
        "HINT: 'distutils' is not installed: add the package that provides it to your requirements"
    )


def test_a_module_python313_removed():
    error = ModuleNotFoundError("No module named 'cgi'", name="cgi")
    assert advice(error, python=(3, 13), full=False) == (
        "HINT: 'cgi' is not in Python 3.13 and later: update the code or the package that imports it, "
        "or use the python3.11-slim tag"
    )
    assert "is not installed" in advice(error, python=(3, 12), full=False)


def test_the_variant_is_full_where_gcc_is_on_path():
    assert full_variant(lambda name: f"/usr/bin/{name}" if name == "gcc" else None) is True
    assert full_variant(lambda name: None) is False
    assert tag((3, 13), True) == "python3.13"
    assert tag((3, 13), False) == "python3.13-slim"


# ---- a failed pip install: the tail of its output -> the tag to use instead
# Excerpts of what pip 24-26 print without a terminal (as in `docker build`): spinners as
# "...: started" / "finished with status", subprocess output inside "╰─> [N lines of output]".

TORCH_NO_RELEASE = """\
Collecting fastapi==0.95.2 (from -r requirements.txt (line 1))
  Downloading fastapi-0.95.2-py3-none-any.whl.metadata (24 kB)
ERROR: Could not find a version that satisfies the requirement torch==1.13.1 (from versions: 2.2.0, 2.2.1, 2.2.2, 2.3.0, 2.3.1, 2.4.0, 2.4.1, 2.5.0, 2.5.1)
ERROR: No matching distribution found for torch==1.13.1
"""  # noqa: E501

SCIPY_REQUIRES_PYTHON = """\
Collecting scipy==1.10.1 (from -r requirements.txt (line 4))
ERROR: Ignored the following versions that require a different python version: 1.10.0 Requires-Python <3.12,>=3.8; 1.10.0rc1 Requires-Python <3.12,>=3.8; 1.10.0rc2 Requires-Python <3.12,>=3.8; 1.10.1 Requires-Python <3.12,>=3.8; 1.6.2 Requires-Python >=3.7,<3.10; 1.9.3 Requires-Python >=3.8,<3.12
ERROR: Could not find a version that satisfies the requirement scipy==1.10.1 (from versions: 0.8.0, 0.9.0, 1.11.2, 1.11.3, 1.12.0, 1.13.0, 1.14.1, 1.15.2)
ERROR: No matching distribution found for scipy==1.10.1
"""  # noqa: E501

# An sdist from --find-links: its own Requires-Python, read after the download.
SCIPY_DIFFERENT_PYTHON = """\
Looking in links: /wheels
Processing /wheels/scipy-1.10.1.tar.gz
ERROR: Package 'scipy' requires a different Python: 3.13.1 not in '<3.12,>=3.8'
"""

NOTHING_AT_ALL = """\
Looking in links: /wheels
ERROR: Could not find a version that satisfies the requirement tensorflow==2.12.0 (from versions: none)
ERROR: No matching distribution found for tensorflow==2.12.0
"""

OFFLINE = """\
WARNING: Retrying (Retry(total=4, connect=None, read=None, redirect=None, status=None)) after connection broken by 'NewConnectionError('<pip._vendor.urllib3.connection.HTTPSConnection object at 0x7f>: Failed to establish a new connection: [Errno -3] Temporary failure in name resolution')': /simple/fastapi/
"""  # noqa: E501

NUMPY_DISTUTILS = """\
Collecting numpy==1.24.4 (from -r requirements.txt (line 2))
  Downloading numpy-1.24.4.tar.gz (10.9 MB)
  Getting requirements to build wheel: started
  Getting requirements to build wheel: finished with status 'error'
  error: subprocess-exited-with-error

  × Getting requirements to build wheel did not run successfully.
  │ exit code: 1
  ╰─> [20 lines of output]
      Traceback (most recent call last):
        File "/tmp/pip-build-env-0c8w3q1n/overlay/lib/python3.12/site-packages/setuptools/__init__.py", line 10, in <module>
          import distutils.core
      ModuleNotFoundError: No module named 'distutils'
      [end of output]
"""  # noqa: E501

# pip 25.3+: the failed step names the package.
NUMPY_IMPIMPORTER = """\
Collecting numpy==1.24.4
  Using cached numpy-1.24.4.tar.gz (10.9 MB)
  Getting requirements to build wheel: finished with status 'error'
  ╰─> [33 lines of output]
      AttributeError: module 'pkgutil' has no attribute 'ImpImporter'. Did you mean: 'zipimporter'?
      [end of output]
ERROR: Failed to build 'numpy' when getting requirements to build wheel
"""

PYDANTIC_CORE_RUST = """\
Collecting pydantic==2.5.3 (from -r requirements.txt (line 5))
  Downloading pydantic-2.5.3-py3-none-any.whl.metadata (65 kB)
Collecting pydantic-core==2.14.6 (from pydantic==2.5.3->-r requirements.txt (line 5))
  Downloading pydantic_core-2.14.6.tar.gz (360 kB)
  Preparing metadata (pyproject.toml): finished with status 'error'
  ╰─> [6 lines of output]
      Cargo, the Rust package manager, is not installed or is not on PATH.
      [end of output]
error: metadata-generation-failed
"""

CRYPTOGRAPHY_RUST = """\
  Building wheel for cryptography (pyproject.toml): finished with status 'error'
  ╰─> [12 lines of output]
      error: can't find Rust compiler
      [end of output]
  ERROR: Failed building wheel for cryptography
Failed to build cryptography
ERROR: Could not build wheels for cryptography, which is required to install pyproject.toml-based projects
"""

# pip 24.0 (tiangolo's), building on a slim variant.
UVLOOP_NO_GCC = """\
  Building wheel for uvloop (pyproject.toml): finished with status 'error'
  ╰─> [9 lines of output]
      gcc -fno-strict-overflow -Wsign-compare -DNDEBUG -g -O3 -Wall -fPIC -c uvloop/loop.c -o build/uvloop/loop.o
      error: command 'gcc' failed: No such file or directory
      [end of output]
  ERROR: Failed building wheel for uvloop
Failed to build uvloop
"""  # noqa: E501

# pip 25.1+: the failed wheels as a diagnostic; the compiler as Debian's system Python names it.
PSUTIL_NO_CC = """\
  Building wheel for psutil (pyproject.toml): finished with status 'error'
      error: command 'x86_64-linux-gnu-gcc' failed: No such file or directory
Failed to build psutil
× Failed to build installable wheels for some pyproject.toml based projects
╰─> psutil
"""

MAKE_MISSING = """\
  Building wheel for pysqlite3 (setup.py): finished with status 'error'
      sh: 1: make: not found
Failed to build pysqlite3
ERROR: ERROR: Failed to build installable wheels for some pyproject.toml based projects (pysqlite3)
"""

# numpy 2 from source (meson) where there is no compiler at all.
MESON_NO_COMPILER = """\
Collecting numpy==2.0.2
  Downloading numpy-2.0.2.tar.gz (18.9 MB)
  Preparing metadata (pyproject.toml): finished with status 'error'
      ../meson.build:1:0: ERROR: Unknown compiler(s): [['cc'], ['gcc'], ['clang'], ['nvc'], ['pgcc'], ['icc'], ['icx']]
error: metadata-generation-failed
"""  # noqa: E501

PSYCOPG2_NO_PG_CONFIG = """\
Collecting psycopg2==2.9.9
  Downloading psycopg2-2.9.9.tar.gz (384 kB)
  Preparing metadata (setup.py): finished with status 'error'
  × python setup.py egg_info did not run successfully.
  ╰─> [5 lines of output]
      Error: pg_config executable not found.
"""

MYSQLCLIENT_NO_CONFIG = """\
Collecting mysqlclient==2.1.1
  Preparing metadata (setup.py): finished with status 'error'
      /bin/sh: 1: mysql_config: not found
      OSError: mysql_config not found
"""

MYSQLCLIENT_NO_PKG_CONFIG = """\
Collecting mysqlclient==2.2.0
  Preparing metadata (pyproject.toml): finished with status 'error'
      /bin/sh: 1: pkg-config: not found
"""

LLAMA_NO_CMAKE_COMPILER = """\
  Building wheel for llama-cpp-python (pyproject.toml): finished with status 'error'
        No CMAKE_C_COMPILER could be found.
Failed to build llama-cpp-python
"""

# A slim variant where the user installed gcc, not libffi-dev.
CFFI_NO_HEADER = """\
  Building wheel for cffi (pyproject.toml): finished with status 'error'
      c/_cffi_backend.c:15:10: fatal error: ffi.h: No such file or directory
      error: command '/usr/bin/gcc' failed with exit code 1
Failed to build cffi
"""

# A full variant: gcc ran, the old C code does not compile against Python 3.13.
UVLOOP_DOES_NOT_COMPILE = """\
  Building wheel for uvloop (pyproject.toml): finished with status 'error'
      uvloop/loop.c:251:12: error: 'PyLongObject' {aka 'struct _longobject'} has no member named 'ob_digit'
      error: command '/usr/bin/gcc' failed with exit code 1
  ERROR: Failed building wheel for uvloop
Failed to build uvloop
ERROR: ERROR: Failed to build installable wheels for some pyproject.toml based projects (uvloop)
"""

# A local project whose setup.py needs the wheel package: pip names nothing.
BDIST_WHEEL_MISSING = """\
Processing ./cext
  Preparing metadata (pyproject.toml): finished with status 'error'
  × Preparing metadata (pyproject.toml) did not run successfully.
  ╰─> [6 lines of output]
      error: invalid command 'bdist_wheel'
"""

UVICORN_OLD_METADATA = """\
Collecting uvicorn==0.14.0
  Downloading uvicorn-0.14.0-py3-none-any.whl.metadata (4.8 kB)
WARNING: Ignoring version 0.14.0 of uvicorn since it has invalid metadata:
Requested uvicorn==0.14.0 from https://index.invalid/packages/34/f4/uvicorn-0.14.0-py3-none-any.whl has invalid metadata: Expected matching RIGHT_PARENTHESIS for LEFT_PARENTHESIS, after version specifier
    click (==7.*)
          ~^
Please use pip<24.1 if you need to use this version.
ERROR: Could not find a version that satisfies the requirement uvicorn==0.14.0 (from versions: 0.1.0, 0.33.0, 0.34.0)
ERROR: No matching distribution found for uvicorn==0.14.0
"""  # noqa: E501

SUCCESS = """\
Collecting fastapi==0.115.6 (from -r requirements.txt (line 1))
  Building wheel for pysqlite3 (pyproject.toml): finished with status 'done'
Successfully built pysqlite3
Successfully installed fastapi-0.115.6 pysqlite3-0.5.4
"""

HASH_MISMATCH = """\
ERROR: THESE PACKAGES DO NOT MATCH THE HASHES FROM THE REQUIREMENTS FILE. If you have updated the package versions, please update the hashes. Otherwise, examine the package contents carefully; someone may have tampered with them.
    fastapi==0.115.6 from https://index.invalid/packages/fastapi-0.115.6-py3-none-any.whl:
        Expected sha256 0000000000000000000000000000000000000000000000000000000000000000
             Got        e9c2716e2ac7c3b4a3bbd6b4b5d2e0a1f6d7c8b9a0e1f2d3c4b5a69788796a5b
"""  # noqa: E501

CONFLICT = """\
ERROR: Cannot install fastapi==0.95.2 and pydantic==2.5.3 because these package versions have conflicting dependencies.
    fastapi 0.95.2 depends on pydantic!=1.7, !=1.7.1, !=1.7.2, !=1.7.3, !=1.8, !=1.8.1, <2.0.0 and >=1.6.2
ERROR: ResolutionImpossible: for help visit https://pip.pypa.io/en/latest/topics/dependency-resolution/#dealing-with-dependency-conflicts
"""  # noqa: E501

# A subprocess that is no build: pip's git clone of a private repository.
GIT_CLONE_FAILED = """\
Collecting private@ git+https://github.com/example/private.git (from -r requirements.txt (line 3))
  fatal: could not read Username for 'https://github.com': No such device or address
  × git clone --filter=blob:none --quiet https://github.com/example/private.git /tmp/pip-install-8k2/private did not run successfully.
"""  # noqa: E501


def hint(output: str, python: tuple[int, int] = (3, 13), full: bool = False) -> str | None:
    return build_advice(output, python, full)


def test_metadata_that_new_pip_rejects_names_old_pip():
    assert hint(UVICORN_OLD_METADATA, (3, 13)) == (
        'HINT: uvicorn==0.14.0 has metadata that pip 24.1 and later reject: add RUN pip install "pip<24.1" '
        "before this install (tiangolo's image had pip 24.0), or pin a newer uvicorn"
    )
    # Without pip's line about it, the same error is a pin with no release.
    other = hint(UVICORN_OLD_METADATA.replace("Please use pip<24.1 if", "Use an older pip if"), (3, 13))
    assert other.startswith("HINT: pip found no release of uvicorn==0.14.0 for Python 3.13")


def test_a_build_that_needs_rust_names_python311_of_the_same_variant():
    assert hint(PYDANTIC_CORE_RUST, (3, 13), full=False) == (
        "HINT: pydantic-core==2.14.6 has no wheel for Python 3.13 here and building it needs Rust, which "
        "the image does not have: use the python3.11-slim tag, or pin a newer pydantic-core"
    )
    assert hint(CRYPTOGRAPHY_RUST, (3, 12), full=True) == (
        "HINT: cryptography has no wheel for Python 3.12 here and building it needs Rust, which the image "
        "does not have: use the python3.11 tag, or pin a newer cryptography"
    )
    # python3.11 has no older tag to name.
    assert hint(PYDANTIC_CORE_RUST, (3, 11), full=False).endswith(
        "does not have: pin a newer pydantic-core (one with a wheel)"
    )


def test_a_build_that_needs_a_removed_module_predates_the_python():
    # The README quotes this line.
    assert hint(NUMPY_DISTUTILS, (3, 12), full=False) == (
        "HINT: numpy==1.24.4 predates Python 3.12 (its build imports distutils, which Python 3.12 removed): "
        "use the python3.11-slim tag, or pin a newer numpy"
    )
    assert hint(NUMPY_DISTUTILS, (3, 14), full=True).endswith(
        ": use the python3.11 tag, or pin a newer numpy"
    )
    assert hint(NUMPY_IMPIMPORTER, (3, 13), full=False) == (
        "HINT: numpy==1.24.4 predates Python 3.12 (its build uses pkgutil.ImpImporter, which Python 3.12 "
        "removed): use the python3.11-slim tag, or pin a newer numpy"
    )
    cgi = NUMPY_DISTUTILS.replace("'distutils'", "'cgi'")
    assert "predates Python 3.13 (its build imports cgi, which Python 3.13 removed)" in hint(cgi, (3, 13))
    # Pythons that still have the module: it is a build failure like any other.
    assert hint(cgi, (3, 12)).startswith("HINT: numpy==1.24.4 has no wheel for Python 3.12")
    assert hint(NUMPY_DISTUTILS, (3, 11), full=True) is None


def test_a_build_without_build_tools_on_a_slim_variant_names_the_full_tag():
    assert hint(UVLOOP_NO_GCC, (3, 13), full=False) == (
        "HINT: building uvloop from source needs build tools that the slim variant does not have: use the "
        "python3.13 tag (gcc, make and -dev headers), or RUN apt-get update && apt-get install -y "
        "build-essential (and the -dev package the error names) before this install"
    )
    for output, pin in (
        (PSUTIL_NO_CC, "psutil"),
        (MAKE_MISSING, "pysqlite3"),
        (MESON_NO_COMPILER, "numpy==2.0.2"),
        (PSYCOPG2_NO_PG_CONFIG, "psycopg2==2.9.9"),
        (CFFI_NO_HEADER, "cffi"),
        (MYSQLCLIENT_NO_CONFIG, "mysqlclient==2.1.1"),
        (MYSQLCLIENT_NO_PKG_CONFIG, "mysqlclient==2.2.0"),
        (LLAMA_NO_CMAKE_COMPILER, "llama-cpp-python"),
    ):
        assert hint(output, (3, 12), full=False).startswith(
            f"HINT: building {pin} from source needs build tools that the slim variant does not have: use "
            "the python3.12 tag (gcc, make and -dev headers)"
        ), output
    # The full variants have them: there the source does not build on this Python.
    assert hint(PSYCOPG2_NO_PG_CONFIG, (3, 13), full=True).startswith(
        "HINT: psycopg2==2.9.9 has no wheel for Python 3.13 here and its source does not build on it"
    )


def test_no_release_for_this_python_names_python311_of_the_same_variant():
    assert hint(TORCH_NO_RELEASE, (3, 12), full=False) == (
        "HINT: pip found no release of torch==1.13.1 for Python 3.12: use the python3.11-slim tag, where "
        "pins made for tiangolo's image have theirs, or pin a version that supports Python 3.12"
    )
    # Releases pip ignored for their Requires-Python, or none at all: the same advice.
    assert "release of scipy==1.10.1 for Python 3.13: use the python3.11 tag," in hint(
        SCIPY_REQUIRES_PYTHON, (3, 13), full=True
    )
    assert "release of scipy==1.10.1 for Python 3.13: use the python3.11-slim tag," in hint(
        SCIPY_DIFFERENT_PYTHON, (3, 13), full=False
    )
    assert "release of tensorflow==2.12.0 for Python 3.14: use the python3.11-slim tag," in hint(
        NOTHING_AT_ALL, (3, 14), full=False
    )
    # python3.11 has no older tag: another pin, or the index.
    assert hint(TORCH_NO_RELEASE, (3, 11), full=False) == (
        "HINT: pip found no release of torch==1.13.1 for Python 3.11: pin another version, or check the "
        "name and the index (--index-url, --find-links)"
    )


def test_an_index_pip_could_not_reach_is_no_matter_of_the_python():
    assert hint(NOTHING_AT_ALL, (3, 13)) is not None  # control: the same failure, online
    assert hint(OFFLINE + NOTHING_AT_ALL, (3, 13)) is None
    ssl = (
        "Could not fetch URL https://idx.invalid/simple/tensorflow/: There was a problem confirming the ssl "
    )
    assert (
        hint(f"{ssl}certificate: HTTPSConnectionPool(host='idx.invalid') - skipping\n{NOTHING_AT_ALL}")
        is None
    )
    # pip listed versions: it reached the index, a retry on the way changes nothing.
    assert hint(OFFLINE + TORCH_NO_RELEASE, (3, 12)) == hint(TORCH_NO_RELEASE, (3, 12)) is not None


def test_any_other_failed_build_on_a_newer_python_names_python311():
    assert hint(UVLOOP_DOES_NOT_COMPILE, (3, 13), full=True) == (
        "HINT: uvloop has no wheel for Python 3.13 here and its source does not build on it: use the "
        "python3.11 tag, or pin a newer uvloop"
    )
    # Nothing names the package: still the tag.
    assert hint(BDIST_WHEEL_MISSING, (3, 13), full=False) == (
        "HINT: a package has no wheel for Python 3.13 here and its source does not build on it: use the "
        "python3.11-slim tag, or pin a newer version"
    )
    # On python3.11, tiangolo's newest Python, a build that fails is not the move's doing.
    assert hint(UVLOOP_DOES_NOT_COMPILE, (3, 11), full=True) is None
    assert hint(BDIST_WHEEL_MISSING, (3, 11), full=False) is None


def test_the_hint_names_the_version_pip_was_building():
    # pip 25.3's "Failed to build 'numpy'" names it; the sdist it used, the version.
    assert hint(NUMPY_IMPIMPORTER.replace("Collecting numpy==1.24.4\n", "")).startswith(
        "HINT: numpy==1.24.4 predates"
    )
    # A dependency's range: the version is the download's, whose name has _ for -.
    ranged = PYDANTIC_CORE_RUST.replace("pydantic-core==2.14.6 (", "pydantic-core<2.15,>=2.14.6 (")
    assert hint(ranged).startswith("HINT: pydantic-core==2.14.6 has no wheel")
    assert hint(ranged.replace("_core-2.14.6.tar", "_core.tar")).startswith(
        "HINT: pydantic-core has no wheel"
    )
    # pip wheel's closing line names no package.
    assert hint(UVLOOP_DOES_NOT_COMPILE + "ERROR: Failed to build one or more wheels\n").startswith(
        "HINT: uvloop has no wheel"
    )


def test_output_that_is_not_a_move_gets_no_advice():
    assert hint(NUMPY_DISTUTILS) is not None  # control: the helper and the parser work
    for output in (SUCCESS, HASH_MISMATCH, CONFLICT, GIT_CLONE_FAILED, ""):
        assert hint(output) is None, output
    # A missing compiler is the slim variant's, and a full one has it.
    assert hint("sh: 1: cc: not found\n", full=False) is not None
    assert hint("sh: 1: cc: not found\n", full=True) is None


# ---- the image's pip (asgi_launcher/pipdoctor.py) and make (scripts/hints/make), as processes


def pip_env() -> dict[str, str]:
    """This environment without the developer's pip settings, offline and quiet about upgrades."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("PIP_") and name != "PYTHONSAFEPATH"
    }
    return {
        **env,
        "PIP_CONFIG_FILE": os.devnull,
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PIP_NO_INPUT": "1",
        "PYTHONPATH": str(REPO),
    }


def pip(*args: str, wrapped: bool = True, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    module = "asgi_launcher.pipdoctor" if wrapped else "pip"
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=pip_env(),
        cwd=REPO,
        timeout=120,
        check=False,
    )


def test_pip_keeps_its_output_and_status_and_the_hint_comes_last(tmp_path):
    args = ("install", "--no-index", "--find-links", str(tmp_path), "nosuchpkg==1.0")
    plain, wrapped = pip(*args, wrapped=False), pip(*args)
    assert plain.returncode != 0
    assert wrapped.returncode == plain.returncode
    assert wrapped.stdout == plain.stdout
    assert "ERROR: No matching distribution found for nosuchpkg==1.0" in plain.stderr
    # pip's stderr, unchanged, then the one line of advice.
    assert wrapped.stderr.startswith(plain.stderr)
    (line,) = wrapped.stderr[len(plain.stderr) :].splitlines()
    version = "{}.{}".format(*sys.version_info[:2])
    assert line.startswith(f"HINT: pip found no release of nosuchpkg==1.0 for Python {version}: ")
    assert line == build_advice(plain.stderr, tuple(sys.version_info[:2]), full_variant())


def test_pip_reads_its_stdin_through_the_wrapper(tmp_path):
    wrapped = pip(
        "download", "--no-index", "--find-links", str(tmp_path), "-r", "/dev/stdin", stdin="gone==2.0\n"
    )
    assert wrapped.returncode != 0
    assert "No matching distribution found for gone==2.0" in wrapped.stderr
    assert wrapped.stderr.splitlines()[-1].startswith("HINT: pip found no release of gone==2.0")


def test_other_pip_commands_pass_through_unchanged():
    plain, wrapped = pip("--version", wrapped=False), pip("--version")
    assert plain.returncode == wrapped.returncode == 0
    assert wrapped.stdout == plain.stdout
    assert wrapped.stdout.startswith("pip ")
    assert wrapped.stderr == plain.stderr == ""


def fake_pip(tmp_path: Path, code: str) -> dict[str, str]:
    """A pip package of this code in tmp_path, and an environment where it comes before the real one."""
    (tmp_path / "pip").mkdir()
    (tmp_path / "pip" / "__init__.py").write_text("")
    (tmp_path / "pip" / "__main__.py").write_text(code)
    return {**pip_env(), "PYTHONPATH": f"{REPO}{os.pathsep}{tmp_path}"}


WRAPPED_INSTALL = [sys.executable, "-m", "asgi_launcher.pipdoctor", "install", "x"]


def test_a_pip_folder_in_the_working_directory_does_not_replace_pip(tmp_path):
    # As with the pip script: the working directory is not on sys.path (python -P).
    fake_pip(tmp_path, "print('not pip')\n")
    run = {"capture_output": True, "text": True, "env": pip_env(), "cwd": tmp_path, "timeout": 120}
    for args in (["--version"], ["install", "--no-index", "--find-links", str(tmp_path), "nosuchpkg==1.0"]):
        result = subprocess.run([sys.executable, "-m", "asgi_launcher.pipdoctor", *args], **run, check=False)
        assert "not pip" not in result.stdout
        assert "pip" in result.stdout + result.stderr
    shadowed = subprocess.run([sys.executable, "-m", "pip", "--version"], **run, check=False)
    assert shadowed.stdout == "not pip\n"  # control: a bare -m would have run it


def test_pip_killed_by_a_signal_kills_the_wrapper_by_it(tmp_path):
    env = fake_pip(tmp_path, "import os\nprint('started', flush=True)\nos.kill(os.getpid(), 9)\n")
    result = subprocess.run(
        WRAPPED_INSTALL, capture_output=True, text=True, env=env, cwd=REPO, timeout=60, check=False
    )
    assert (result.returncode, result.stdout, result.stderr) == (-signal.SIGKILL, "started\n", "")


@pytest.mark.parametrize(
    ("number", "to_the_group"),
    [(signal.SIGTERM, False), (signal.SIGINT, True)],
    ids=["docker stop's SIGTERM, to the wrapper", "a terminal's SIGINT, to the process group"],
)
def test_a_signal_stops_pip_and_the_wrapper_exits_as_pip_did(tmp_path, number, to_the_group):
    env = fake_pip(
        tmp_path,
        f"import signal, sys, time\nsignal.signal({int(number)}, lambda *_: sys.exit('pip: stopped'))\n"
        "print('waiting', flush=True)\ntime.sleep(60)\n",
    )
    with subprocess.Popen(
        WRAPPED_INSTALL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO,
        start_new_session=True,
    ) as wrapper:
        assert wrapper.stdout.readline() == "waiting\n"  # as pip wrote it, not when it ends
        if to_the_group:
            os.killpg(wrapper.pid, number)
        else:
            wrapper.send_signal(number)
        out, err = wrapper.communicate(timeout=60)
    assert (wrapper.returncode, out, err) == (1, "", "pip: stopped\n")


def test_a_wrapper_that_fails_before_pip_starts_runs_plain_pip(monkeypatch):
    execs = []
    monkeypatch.setattr(pipdoctor, "start", lambda args: 1 / 0)
    monkeypatch.setattr(os, "execv", lambda path, argv: execs.append((path, argv)))
    pipdoctor.main(["install", "x"])
    assert execs == [(sys.executable, [sys.executable, "-P", "-m", "pip", "install", "x"])]


def test_the_command_is_the_first_word_and_none_under_another_python():
    assert command(["install", "x"]) == "install"
    assert command(["-q", "--no-cache-dir", "wheel", "x"]) == "wheel"
    assert command(["--version"]) is None
    # Under another Python the advice would name the wrong one.
    assert command(["--python=/usr/bin/python3", "install", "x"]) is None
    assert command(["download", "--python-version", "3.10", "numpy"]) is None


def test_the_make_stub_fails_as_a_missing_make_and_names_the_full_tag():
    stub = REPO / "scripts" / "hints" / "make"
    assert os.access(stub, os.X_OK)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}/usr/bin{os.pathsep}/bin"}
    result = subprocess.run(["sh", str(stub), "all"], capture_output=True, text=True, env=env, check=False)
    version = "{}.{}".format(*sys.version_info[:2])
    assert result.returncode == 127
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "make: not found",
        f"HINT: this image has no make (the slim variants have no build tools): use the python{version} tag, "
        "or RUN apt-get update && apt-get install -y make (build-essential for the C compiler too)",
    ]
    # Without a python3 it still fails the same way, and still says what to do.
    no_python = subprocess.run(
        ["/bin/sh", str(stub)], capture_output=True, text=True, env={"PATH": "/nonexistent"}, check=False
    )
    assert no_python.returncode == 127
    assert no_python.stderr.splitlines()[0] == "make: not found"
    assert no_python.stderr.splitlines()[1].startswith("HINT: this image has no make")


def mounted_here(tmp_path, monkeypatch, uid: int, mode: int) -> str:
    """A directory mounted into the container, as /proc/self/mountinfo would show it."""
    point = tmp_path / "data"
    point.mkdir()
    (point / "app.db").write_text("")
    os.chown(point, uid, uid)
    point.chmod(mode)
    line = f"900 1 8:1 /home/me/data {point} rw,relatime - ext4 /dev/vda rw\n"
    monkeypatch.setattr("asgi_launcher.doctor.read_mountinfo", lambda: line)
    return str(point)


@pytest.mark.parametrize(
    "error",
    [
        PermissionError(13, "Permission denied", "{point}/app.db"),
        sqlite3.OperationalError("unable to open database file"),
        sqlite3.OperationalError("attempt to write a readonly database"),
    ],
    ids=["PermissionError", "unable to open", "readonly database"],
)
def test_a_write_refused_under_a_host_owned_mount_names_its_owner(tmp_path, monkeypatch, error):
    point = mounted_here(tmp_path, monkeypatch, 1000, 0o755)
    monkeypatch.chdir(tmp_path)  # the app's directory, which the mount is under
    if isinstance(error, PermissionError):
        error = PermissionError(13, "Permission denied", error.filename.format(point=point))
    hint = advice(error, uid=10001)
    assert hint.startswith(
        f"HINT: {point} is mounted owned by UID 1000, which the app (UID 10001) may not write"
    )
    assert 'compose user: "1000:1000"' in hint


def test_a_mount_the_app_may_write_gets_the_usual_advice(tmp_path, monkeypatch):
    """The control: the same write refusal, the mount writable by the app's user."""
    mounted_here(tmp_path, monkeypatch, 10001, 0o755)
    monkeypatch.chdir(tmp_path)
    hint = advice(sqlite3.OperationalError("unable to open database file"), uid=10001)
    assert hint.startswith("HINT: SQLite could not write its file")
