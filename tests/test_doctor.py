"""The one line of advice next to errors a move from tiangolo's image causes (asgi_launcher/doctor.py),
and after a failed pip install (the image's pip: asgi_launcher/pipdoctor.py; its make: scripts/hints/make)."""

# ruff: noqa: RUF001 - the pip outputs below have the multiplication sign pip prints

from __future__ import annotations

import logging
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from asgi_launcher.doctor import Doctor, advice, build_advice, full_variant, tag
from asgi_launcher.pipdoctor import command

REPO = Path(__file__).resolve().parent.parent


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
# The outputs below follow what pip 24-26 print without a terminal (as in `docker build`): spinners as
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

NUMPY_121 = """\
ERROR: Ignored the following versions that require a different python version: 1.21.2 Requires-Python >=3.7,<3.11; 1.21.3 Requires-Python >=3.7,<3.11; 1.21.4 Requires-Python >=3.7,<3.11
ERROR: Could not find a version that satisfies the requirement numpy==1.21.2 (from versions: 1.26.0, 1.26.1, 1.26.4, 2.0.0, 2.1.3)
ERROR: No matching distribution found for numpy==1.21.2
"""  # noqa: E501

DJANGO_NEWER = """\
ERROR: Ignored the following versions that require a different python version: 6.0 Requires-Python >=3.12; 6.0a1 Requires-Python >=3.12
ERROR: Could not find a version that satisfies the requirement Django==6.0 (from versions: 5.1.4, 5.2, 5.2.8)
ERROR: No matching distribution found for Django==6.0
"""  # noqa: E501

NOTHING_AT_ALL = """\
Looking in links: /wheels
ERROR: Could not find a version that satisfies the requirement tensorflow==2.12.0 (from versions: none)
ERROR: No matching distribution found for tensorflow==2.12.0
"""

NUMPY_DISTUTILS = """\
Collecting numpy==1.24.4 (from -r requirements.txt (line 2))
  Downloading numpy-1.24.4.tar.gz (10.9 MB)
     ━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━ 10.9/10.9 MB 41.5 MB/s eta 0:00:00
  Installing build dependencies: started
  Installing build dependencies: finished with status 'done'
  Getting requirements to build wheel: started
  Getting requirements to build wheel: finished with status 'error'
  error: subprocess-exited-with-error

  × Getting requirements to build wheel did not run successfully.
  │ exit code: 1
  ╰─> [20 lines of output]
      Traceback (most recent call last):
        File "/opt/venv/lib/python3.12/site-packages/pip/_vendor/pyproject_hooks/_in_process/_in_process.py", line 353, in <module>
          main()
        File "/opt/venv/lib/python3.12/site-packages/pip/_vendor/pyproject_hooks/_in_process/_in_process.py", line 112, in get_requires_for_build_wheel
          backend = _build_backend()
                    ^^^^^^^^^^^^^^^^
        File "/tmp/pip-build-env-0c8w3q1n/overlay/lib/python3.12/site-packages/setuptools/__init__.py", line 10, in <module>
          import distutils.core
      ModuleNotFoundError: No module named 'distutils'
      [end of output]

  note: This error originates from a subprocess, and is likely not a problem with pip.
error: subprocess-exited-with-error

× Getting requirements to build wheel did not run successfully.
│ exit code: 1
╰─> See above for output.

note: This error originates from a subprocess, and is likely not a problem with pip.
"""  # noqa: E501

# pip 25.3+: the failed step names the package.
NUMPY_IMPIMPORTER = """\
Collecting numpy==1.24.4
  Using cached numpy-1.24.4.tar.gz (10.9 MB)
  Installing build dependencies: started
  Installing build dependencies: finished with status 'done'
  Getting requirements to build wheel: started
  Getting requirements to build wheel: finished with status 'error'
  error: subprocess-exited-with-error

  × Getting requirements to build wheel did not run successfully.
  │ exit code: 1
  ╰─> [33 lines of output]
        File "/tmp/pip-build-env-tv1xq0a2/overlay/lib/python3.13/site-packages/pkg_resources/__init__.py", line 2172, in <module>
          register_finder(pkgutil.ImpImporter, find_on_path)
                          ^^^^^^^^^^^^^^^^^^^
      AttributeError: module 'pkgutil' has no attribute 'ImpImporter'. Did you mean: 'zipimporter'?
      [end of output]

  note: This error originates from a subprocess, and is likely not a problem with pip.
ERROR: Failed to build 'numpy' when getting requirements to build wheel
"""  # noqa: E501

PYDANTIC_CORE_RUST = """\
Collecting pydantic==2.5.3 (from -r requirements.txt (line 5))
  Downloading pydantic-2.5.3-py3-none-any.whl.metadata (65 kB)
Collecting pydantic-core==2.14.6 (from pydantic==2.5.3->-r requirements.txt (line 5))
  Downloading pydantic_core-2.14.6.tar.gz (360 kB)
  Installing build dependencies: started
  Installing build dependencies: finished with status 'done'
  Getting requirements to build wheel: started
  Getting requirements to build wheel: finished with status 'done'
  Preparing metadata (pyproject.toml): started
  Preparing metadata (pyproject.toml): finished with status 'error'
  error: subprocess-exited-with-error

  × Preparing metadata (pyproject.toml) did not run successfully.
  │ exit code: 1
  ╰─> [6 lines of output]

      Cargo, the Rust package manager, is not installed or is not on PATH.
      This package requires Rust and Cargo to compile extensions. Install it through
      the system's package manager or via https://rustup.rs/

      Checking for Rust toolchain....
      [end of output]

  note: This error originates from a subprocess, and is likely not a problem with pip.
error: metadata-generation-failed

× Encountered error while generating package metadata.
╰─> See above for output.

note: This is an issue with the package mentioned above, not pip.
hint: See above for details.
"""

CRYPTOGRAPHY_RUST = """\
Building wheels for collected packages: cryptography
  Building wheel for cryptography (pyproject.toml): started
  Building wheel for cryptography (pyproject.toml): finished with status 'error'
  error: subprocess-exited-with-error

  × Building wheel for cryptography (pyproject.toml) did not run successfully.
  │ exit code: 1
  ╰─> [12 lines of output]
      running bdist_wheel
      running build_rust

          =============================DEBUG ASSISTANCE=============================
          If you are seeing a compilation error please try the following steps to
          successfully install cryptography:
          =============================DEBUG ASSISTANCE=============================

      error: can't find Rust compiler
      [end of output]

  note: This error originates from a subprocess, and is likely not a problem with pip.
  ERROR: Failed building wheel for cryptography
Failed to build cryptography
ERROR: Could not build wheels for cryptography, which is required to install pyproject.toml-based projects
"""

# pip 24.0 (tiangolo's), building on a slim variant.
UVLOOP_NO_GCC = """\
Building wheels for collected packages: uvloop
  Building wheel for uvloop (pyproject.toml): started
  Building wheel for uvloop (pyproject.toml): finished with status 'error'
  error: subprocess-exited-with-error

  × Building wheel for uvloop (pyproject.toml) did not run successfully.
  │ exit code: 1
  ╰─> [9 lines of output]
      running bdist_wheel
      running build_ext
      building 'uvloop.loop' extension
      creating build/temp.linux-x86_64-cpython-313/uvloop
      gcc -fno-strict-overflow -Wsign-compare -DNDEBUG -g -O3 -Wall -fPIC -I/opt/venv/include -I/usr/local/include/python3.13 -c uvloop/loop.c -o build/temp.linux-x86_64-cpython-313/uvloop/loop.o -O2
      error: command 'gcc' failed: No such file or directory
      [end of output]

  note: This error originates from a subprocess, and is likely not a problem with pip.
  ERROR: Failed building wheel for uvloop
Failed to build uvloop
ERROR: Could not build wheels for uvloop, which is required to install pyproject.toml-based projects
"""  # noqa: E501

# pip 25.1+: the failed wheels as a diagnostic; the compiler as Debian's system Python names it.
PSUTIL_NO_CC = """\
  Building wheel for psutil (pyproject.toml): finished with status 'error'
  ╰─> [4 lines of output]
      building 'psutil._psutil_linux' extension
      x86_64-linux-gnu-gcc -Wsign-compare -fPIC -DPSUTIL_POSIX=1 -c psutil/_psutil_linux.c
      error: command 'x86_64-linux-gnu-gcc' failed: No such file or directory
      [end of output]
Failed to build psutil
error: failed-wheel-build-for-install

× Failed to build installable wheels for some pyproject.toml based projects
╰─> psutil
"""

MAKE_MISSING = """\
  Building wheel for pysqlite3 (setup.py): finished with status 'error'
  ╰─> [3 lines of output]
      running build_ext
      sh: 1: make: not found
      [end of output]
ERROR: ERROR: Failed to build installable wheels for some pyproject.toml based projects (pysqlite3)
"""

# numpy 2 from source (meson) where there is no compiler at all.
MESON_NO_COMPILER = """\
Collecting numpy==2.0.2
  Downloading numpy-2.0.2.tar.gz (18.9 MB)
  Preparing metadata (pyproject.toml): finished with status 'error'
  ╰─> [14 lines of output]
      The Meson build system
      ../meson.build:1:0: ERROR: Unknown compiler(s): [['cc'], ['gcc'], ['clang'], ['nvc'], ['pgcc'], ['icc'], ['icx']]
      The following exception(s) were encountered:
      Running `cc --version` gave "[Errno 2] No such file or directory: 'cc'"
      [end of output]
error: metadata-generation-failed
"""  # noqa: E501

# A full variant: gcc ran, the old C code does not compile against Python 3.13.
UVLOOP_DOES_NOT_COMPILE = """\
  Building wheel for uvloop (pyproject.toml): finished with status 'error'
  ╰─> [5 lines of output]
      gcc -Wsign-compare -DNDEBUG -g -fwrapv -O3 -Wall -fPIC -I/usr/local/include/python3.13 -c uvloop/loop.c -o build/uvloop/loop.o
      uvloop/loop.c:251:12: error: 'PyLongObject' {aka 'struct _longobject'} has no member named 'ob_digit'
      error: command '/usr/bin/gcc' failed with exit code 1
      [end of output]
  ERROR: Failed building wheel for uvloop
Failed to build uvloop
ERROR: ERROR: Failed to build installable wheels for some pyproject.toml based projects (uvloop)
"""  # noqa: E501

PSYCOPG2_NO_PG_CONFIG = """\
Collecting psycopg2==2.9.9
  Downloading psycopg2-2.9.9.tar.gz (384 kB)
  Preparing metadata (setup.py): finished with status 'error'
  error: subprocess-exited-with-error

  × python setup.py egg_info did not run successfully.
  │ exit code: 1
  ╰─> [5 lines of output]
      Error: pg_config executable not found.

      pg_config is required to build psycopg2 from source.  Please add the directory
      containing pg_config to the $PATH or specify the full executable path with the
      [end of output]
error: metadata-generation-failed
"""

# A local project whose setup.py needs the wheel package, on python3.11-slim: nothing of the move.
BDIST_WHEEL_MISSING = """\
Processing ./cext
  Preparing metadata (pyproject.toml): started
  Preparing metadata (pyproject.toml): finished with status 'error'
  error: subprocess-exited-with-error

  × Preparing metadata (pyproject.toml) did not run successfully.
  │ exit code: 1
  ╰─> [6 lines of output]
      usage: setup.py [global_opts] cmd1 [cmd1_opts] [cmd2 [cmd2_opts] ...]

      error: invalid command 'bdist_wheel'
      [end of output]

  note: This error originates from a subprocess, and is likely not a problem with pip.
error: metadata-generation-failed
"""

UVICORN_OLD_METADATA = """\
Collecting uvicorn==0.14.0
  Downloading uvicorn-0.14.0-py3-none-any.whl.metadata (4.8 kB)
WARNING: Ignoring version 0.14.0 of uvicorn since it has invalid metadata:
Requested uvicorn==0.14.0 from https://files.pythonhosted.org/packages/34/f4/uvicorn-0.14.0-py3-none-any.whl has invalid metadata: Expected matching RIGHT_PARENTHESIS for LEFT_PARENTHESIS, after version specifier
    click (==7.*)
          ~^
Please use pip<24.1 if you need to use this version.
ERROR: Could not find a version that satisfies the requirement uvicorn==0.14.0 (from versions: 0.1.0, 0.33.0, 0.34.0)
ERROR: No matching distribution found for uvicorn==0.14.0
"""  # noqa: E501

SUCCESS = """\
Collecting fastapi==0.115.6 (from -r requirements.txt (line 1))
  Downloading fastapi-0.115.6-py3-none-any.whl.metadata (27 kB)
Building wheels for collected packages: pysqlite3
  Building wheel for pysqlite3 (pyproject.toml): finished with status 'done'
Successfully built pysqlite3
Installing collected packages: fastapi, pysqlite3
Successfully installed fastapi-0.115.6 pysqlite3-0.5.4
"""

HASH_MISMATCH = """\
ERROR: THESE PACKAGES DO NOT MATCH THE HASHES FROM THE REQUIREMENTS FILE. If you have updated the package versions, please update the hashes. Otherwise, examine the package contents carefully; someone may have tampered with them.
    fastapi==0.115.6 from https://files.pythonhosted.org/packages/fastapi-0.115.6-py3-none-any.whl:
        Expected sha256 0000000000000000000000000000000000000000000000000000000000000000
             Got        e9c2716e2ac7c3b4a3bbd6b4b5d2e0a1f6d7c8b9a0e1f2d3c4b5a69788796a5b
"""  # noqa: E501

CONFLICT = """\
ERROR: Cannot install fastapi==0.95.2 and pydantic==2.5.3 because these package versions have conflicting dependencies.

The conflict is caused by:
    The user requested pydantic==2.5.3
    fastapi 0.95.2 depends on pydantic!=1.7, !=1.7.1, !=1.7.2, !=1.7.3, !=1.8, !=1.8.1, <2.0.0 and >=1.6.2

ERROR: ResolutionImpossible: for help visit https://pip.pypa.io/en/latest/topics/dependency-resolution/#dealing-with-dependency-conflicts
"""  # noqa: E501

OFFLINE = """\
WARNING: Retrying (Retry(total=4, connect=None, read=None, redirect=None, status=None)) after connection broken by 'NewConnectionError('<pip._vendor.urllib3.connection.HTTPSConnection object at 0x7f>: Failed to establish a new connection: [Errno -3] Temporary failure in name resolution')': /simple/fastapi/
"""  # noqa: E501


def hint(output: str, python: tuple[int, int] = (3, 13), full: bool = False) -> str | None:
    return build_advice(output, python, full)


def test_a_pin_without_a_release_for_this_python_names_python311_of_the_same_variant():
    assert hint(TORCH_NO_RELEASE, (3, 12), full=False) == (
        "HINT: torch==1.13.1 has no release for Python 3.12: use the python3.11-slim tag, where pins made "
        "for tiangolo's image have theirs, or pin one of the versions pip lists above"
    )
    assert "use the python3.11 tag," in hint(TORCH_NO_RELEASE, (3, 14), full=True)
    # Already on python3.11: no older tag, the pin is what to change.
    assert hint(TORCH_NO_RELEASE, (3, 11), full=False) == (
        "HINT: torch==1.13.1 has no release for Python 3.11: pin one of the versions pip lists above"
    )


def test_requires_python_picks_the_tag_that_admits_the_pin():
    assert hint(SCIPY_REQUIRES_PYTHON, (3, 13), full=True) == (
        "HINT: scipy==1.10.1 does not support Python 3.13 (Requires-Python <3.12,>=3.8): use the "
        "python3.11 tag, or pin a newer scipy"
    )
    # numpy 1.21 runs on no tag of this image: python3.11 would fail the same way.
    numpy = hint(NUMPY_121, (3, 12), full=False)
    assert numpy == (
        "HINT: numpy==1.21.2 runs on no Python this image has a tag for (Requires-Python >=3.7,<3.11): "
        "pin a version of numpy that supports Python 3.12"
    )
    # A range: the releases it allows are the ones that count.
    assert hint(NUMPY_121.replace("numpy==1.21.2", "numpy~=1.21.0"), (3, 12), full=False).startswith(
        "HINT: numpy~=1.21.0 runs on no Python this image has a tag for (Requires-Python >=3.7,<3.11)"
    )
    # A pin newer than this Python: the next tag up.
    assert hint(DJANGO_NEWER, (3, 11), full=False) == (
        "HINT: Django==6.0 does not support Python 3.11 (Requires-Python >=3.12): use the python3.12-slim "
        "tag, or pin an older Django"
    )


def test_a_requirement_pip_found_nothing_for():
    assert hint(NOTHING_AT_ALL, (3, 13), full=False) == (
        "HINT: pip found no release of tensorflow==2.12.0 for Python 3.13: if it has releases for older "
        "Pythons, use the python3.11-slim tag; otherwise check the name and the index (--index-url, "
        "--find-links)"
    )
    assert "python3.11" not in hint(NOTHING_AT_ALL, (3, 11), full=False)


def test_a_build_that_needs_distutils_predates_python312():
    assert hint(NUMPY_DISTUTILS, (3, 12), full=True) == (
        "HINT: numpy==1.24.4 predates Python 3.12 (its build imports distutils, which Python 3.12 "
        "removed): use the python3.11 tag, or pin a newer numpy"
    )
    assert "use the python3.11-slim tag" in hint(NUMPY_DISTUTILS, (3, 14), full=False)
    assert hint(NUMPY_IMPIMPORTER, (3, 13), full=False) == (
        "HINT: numpy==1.24.4 predates Python 3.12 (its build uses pkgutil.ImpImporter, which Python 3.12 "
        "removed): use the python3.11-slim tag, or pin a newer numpy"
    )
    # Python 3.11 still has distutils: the build failed for another reason, and python3.11 is no advice.
    assert "python3.11 tag" not in hint(NUMPY_DISTUTILS, (3, 11), full=True)


def test_a_build_that_needs_rust_names_python311():
    assert hint(PYDANTIC_CORE_RUST, (3, 13), full=False) == (
        "HINT: pydantic-core==2.14.6 has no wheel for Python 3.13 here and building it needs Rust, which "
        "the image does not have: use the python3.11-slim tag, where the pins of tiangolo's image have "
        "wheels, or pin a newer pydantic-core"
    )
    # Rust wins over the compiler a slim variant also lacks; full stays full.
    assert "use the python3.11 tag," in hint(CRYPTOGRAPHY_RUST, (3, 12), full=True)
    assert hint(CRYPTOGRAPHY_RUST, (3, 12), full=True).startswith("HINT: cryptography has no wheel")
    assert hint(PYDANTIC_CORE_RUST, (3, 11), full=False) == (
        "HINT: pydantic-core==2.14.6 has no wheel for Python 3.11 here and building it needs Rust, which "
        "the image does not have: pin a newer pydantic-core (one with a wheel), or install Rust "
        "(https://rustup.rs) first"
    )


def test_a_build_without_a_compiler_on_a_slim_variant_names_the_full_tag():
    assert hint(UVLOOP_NO_GCC, (3, 13), full=False) == (
        "HINT: building uvloop from source needs a C compiler, which the slim variant does not have: use "
        "the python3.13 tag (gcc, make and -dev headers), or RUN apt-get update && apt-get install -y "
        "build-essential before this install"
    )
    assert hint(PSUTIL_NO_CC, (3, 12), full=False).startswith(
        "HINT: building psutil from source needs a C compiler, which the slim variant does not have: use "
        "the python3.12 tag"
    )
    assert hint(MAKE_MISSING, (3, 14), full=False).startswith(
        "HINT: building pysqlite3 from source needs make, which the slim variant does not have: use the "
        "python3.14 tag"
    )
    assert hint(MESON_NO_COMPILER, (3, 11), full=False).startswith(
        "HINT: building numpy==2.0.2 from source needs a C compiler, which the slim variant does not have: "
        "use the python3.11 tag"
    )


def test_a_source_that_does_not_build_on_a_full_variant_names_python311():
    assert hint(UVLOOP_DOES_NOT_COMPILE, (3, 13), full=True) == (
        "HINT: uvloop has no wheel for Python 3.13 here and its source does not build on it: use the "
        "python3.11 tag, where the pins of tiangolo's image have wheels, or pin a newer uvloop"
    )
    on_311 = hint(UVLOOP_DOES_NOT_COMPILE, (3, 11), full=True)
    assert on_311 == (
        "HINT: uvloop has no wheel for Python 3.11 here and its source did not build: pin a newer uvloop "
        "(one with a wheel), or install what the error above says is missing"
    )
    # A slim variant where no compiler or -dev file is named missing: the same advice, slim stays slim.
    assert hint(BDIST_WHEEL_MISSING, (3, 13), full=False) == (
        "HINT: a package has no wheel for Python 3.13 here and its source does not build on it: use the "
        "python3.11-slim tag, where the pins of tiangolo's image have wheels, or pin a newer version"
    )
    assert "python3.11" not in hint(BDIST_WHEEL_MISSING, (3, 11), full=False)


def test_a_build_without_dev_files_on_a_slim_variant_names_the_full_tag():
    assert hint(PSYCOPG2_NO_PG_CONFIG, (3, 13), full=False) == (
        "HINT: building psycopg2==2.9.9 from source needs -dev files that the slim variant does not have: "
        "use the python3.13 tag (gcc, make and -dev headers), or RUN apt-get update && apt-get install -y "
        "build-essential and the -dev package the error above names"
    )
    # The full variants have them: there it is a source that does not build on this Python.
    assert hint(PSYCOPG2_NO_PG_CONFIG, (3, 13), full=True).startswith(
        "HINT: psycopg2==2.9.9 has no wheel for Python 3.13 here and its source does not build on it: use "
        "the python3.11 tag,"
    )


def test_metadata_that_new_pip_rejects_names_old_pip():
    assert hint(UVICORN_OLD_METADATA, (3, 13), full=False) == (
        'HINT: uvicorn==0.14.0 has metadata that pip 24.1 and later reject: add RUN pip install "pip<24.1" '
        "before this install (tiangolo's image had pip 24.0), or pin a newer uvicorn"
    )


def test_coloured_output_reads_the_same():
    coloured = UVLOOP_NO_GCC.replace("error: command", "\x1b[1;31merror\x1b[0m: command").replace(
        "\n", "\r\n"
    )
    assert hint(coloured, (3, 13), full=False) == hint(UVLOOP_NO_GCC, (3, 13), full=False) is not None


def test_output_that_is_not_a_move_gets_no_advice():
    # Positive control through the same helper: the helper and the parser work.
    assert hint(NUMPY_DISTUTILS) is not None
    assert hint(SUCCESS) is None
    assert hint(HASH_MISMATCH) is None
    assert hint(CONFLICT) is None
    assert hint("") is None
    # A compiler missing where there is one (full) is not the slim variant's; without a build failure
    # line there is nothing to advise on.
    assert hint("sh: 1: cc: not found\n", full=True) is None
    assert hint("sh: 1: cc: not found\n", full=False) is not None


def test_an_index_pip_could_not_reach_is_no_matter_of_the_python():
    assert hint(NOTHING_AT_ALL, (3, 13)) is not None  # positive control: the same failure, online
    assert hint(OFFLINE + NOTHING_AT_ALL, (3, 13)) is None
    # pip listed versions: it reached the index, a retry on the way does not change the advice.
    assert hint(OFFLINE + TORCH_NO_RELEASE, (3, 12)) == hint(TORCH_NO_RELEASE, (3, 12))


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


def test_a_pip_folder_in_the_working_directory_does_not_replace_pip(tmp_path):
    # As with the pip script: the working directory is not on sys.path (python -P).
    (tmp_path / "pip").mkdir()
    (tmp_path / "pip" / "__init__.py").write_text("")
    (tmp_path / "pip" / "__main__.py").write_text("print('not pip')\n")
    (tmp_path / "links").mkdir()
    links = str(tmp_path / "links")
    for args in (["--version"], ["install", "--no-index", "--find-links", links, "nosuchpkg==1.0"]):
        result = subprocess.run(
            [sys.executable, "-m", "asgi_launcher.pipdoctor", *args],
            capture_output=True,
            text=True,
            env=pip_env(),
            cwd=tmp_path,
            timeout=120,
            check=False,
        )
        assert "not pip" not in result.stdout
        assert "pip" in result.stdout + result.stderr
    shadowed = subprocess.run(
        [sys.executable, "-m", "pip", "--version"],
        capture_output=True,
        text=True,
        env=pip_env(),
        cwd=tmp_path,
        check=False,
    )
    assert shadowed.stdout == "not pip\n"  # control: a bare -m would have run it


def test_the_command_is_found_after_pips_general_options():
    assert command(["install", "x"]) == "install"
    assert command(["-q", "--log", "/tmp/pip.log", "--cache-dir=/tmp/c", "wheel", "x"]) == "wheel"
    assert command(["--timeout", "60", "download", "x"]) == "download"
    assert command(["--version"]) is None
    assert command(["list"]) == "list"
    # Under another Python, pip's own re-run: the advice would name the wrong Python.
    assert command(["--python", "/usr/bin/python3", "install", "x"]) is None


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
