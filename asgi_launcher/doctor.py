"""One line of advice on the errors that moving from tiangolo's image causes, next to the traceback.

The two usual ones: a package his image installed that the app never listed (his image installed
fastapi[all]; this one does too, but a derived image may have replaced it), and a file the app
writes where its non-root user may not (his image ran the app as root). ``Doctor`` is a logging
filter on the error log's handlers: it appends the advice to the record's message, the traceback
stays as it was.

The other move is to a newer Python: his tags stopped at python3.11, this image's go to python3.14, and
pins made for his image have no release, no wheel, or a build that needs what a newer Python removed.
``advice`` names the tag to use for the runtime errors of that move (an old pydantic 1.x, a module
the standard library no longer has), ``build_advice`` for a failed ``pip install`` (pipdoctor.py, the
image's ``pip``, prints it after pip's own output).
"""

from __future__ import annotations

import logging
import os
import re
import sys

# Modules of fastapi[all] (and the extras his image had) -> the package that provides them.
FASTAPI_ALL = {
    "multipart": "python-multipart",
    "python_multipart": "python-multipart",
    "jinja2": "jinja2",
    "email_validator": "email-validator",
    "itsdangerous": "itsdangerous",
    "yaml": "pyyaml",
    "ujson": "ujson",
    "orjson": "orjson",
    "httpx": "httpx",
    "pydantic_settings": "pydantic-settings",
    "pydantic_extra_types": "pydantic-extra-types",
    "dotenv": "python-dotenv",
}
WRITE_ERRORS = ("unable to open database file", "attempt to write a readonly database")
# The Pythons of this image's tags (python3.X, python3.X-slim); tiangolo's newest was the first.
TAG_PYTHONS = ((3, 11), (3, 12), (3, 13), (3, 14))
OLDEST = TAG_PYTHONS[0]
# Standard-library modules a newer Python removed -> the first Python without them (PEP 594, PEP 632).
REMOVED = {
    **dict.fromkeys(("distutils", "imp", "asynchat", "asyncore", "smtpd"), (3, 12)),
    **dict.fromkeys(
        (
            "aifc",
            "audioop",
            "cgi",
            "cgitb",
            "chunk",
            "crypt",
            "imghdr",
            "lib2to3",
            "mailcap",
            "msilib",
            "nis",
            "nntplib",
            "ossaudiodev",
            "pipes",
            "sndhdr",
            "spwd",
            "sunau",
            "telnetlib",
            "uu",
            "xdrlib",
        ),
        (3, 13),
    ),
}


def tag(python: tuple[int, int], full: bool) -> str:
    """The image's tag of a Python and variant: python3.13 (full: compilers, make, -dev headers) or
    python3.13-slim."""
    return f"python{python[0]}.{python[1]}{'' if full else '-slim'}"


def full_variant(which=None) -> bool:
    """Whether this is a full variant: it has a C compiler (gcc) on PATH, the slim ones have none."""
    if which is None:
        from shutil import which
    return which("gcc") is not None


def _version(python: tuple[int, int]) -> str:
    return f"{python[0]}.{python[1]}"


def _chain(error: BaseException | None):
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__cause__ or error.__context__


def advice(
    error: BaseException | None,
    uid: int | None = None,
    *,
    python: tuple[int, int] | None = None,
    full: bool | None = None,
) -> str | None:
    """What to change, in one line, or None when the error is not one of these (``uid``: the app's;
    ``python`` and ``full``: the image's Python and variant, this process's by default)."""
    uid = os.getuid() if uid is None else uid
    python = tuple(sys.version_info[:2]) if python is None else python
    for cause in _chain(error):
        if isinstance(cause, ModuleNotFoundError) and cause.name:
            module = cause.name.split(".")[0]
            package = FASTAPI_ALL.get(module)
            if package:
                return (
                    f"HINT: {module!r} is not installed: add {package} to your requirements "
                    "(tiangolo's image had it as part of fastapi[all])"
                )
            removed = REMOVED.get(module)
            if removed and python >= removed:
                older = tag(OLDEST, full_variant() if full is None else full)
                if module == "distutils":
                    return (
                        f"HINT: 'distutils' is not in Python {_version(removed)} and later: add setuptools "
                        f"to your requirements (it provides distutils), or use the {older} tag"
                    )
                return (
                    f"HINT: {module!r} is not in Python {_version(removed)} and later: update the code "
                    f"or the package that imports it, or use the {older} tag"
                )
            return f"HINT: {module!r} is not installed: add the package that provides it to your requirements"
        if isinstance(cause, RuntimeError) and "python-multipart" in str(cause):
            return "HINT: add python-multipart to your requirements (tiangolo's image had it in fastapi[all])"
        if (
            isinstance(cause, TypeError)
            and "ForwardRef._evaluate()" in str(cause)
            and "recursive_guard" in str(cause)
        ):
            instead = ""
            if python > OLDEST:
                instead = f", or use the {tag(OLDEST, full_variant() if full is None else full)} tag"
            return (
                f"HINT: pydantic older than 1.10.17 does not run on Python {_version(python)} (it calls "
                f"ForwardRef._evaluate() the old way): pin pydantic>=1.10.17,<2{instead}"
            )
        if uid == 0:
            continue
        written = isinstance(cause, PermissionError) or any(text in str(cause) for text in WRITE_ERRORS)
        if written and (hint := mount_hint(uid, getattr(cause, "filename", None))):
            return hint
        if isinstance(cause, PermissionError) and cause.filename:
            return (
                f"HINT: the app runs as UID {uid}, not root as in tiangolo's image, and may not write "
                f"{cause.filename}: give it that path in your Dockerfile (RUN chown {uid} {cause.filename}), "
                "write under /tmp, or set APP_USER=root"
            )
        if any(text in str(cause) for text in WRITE_ERRORS):
            return (
                f"HINT: SQLite could not write its file: the app runs as UID {uid}, not root as in "
                f"tiangolo's image; keep the database where that user may write ({os.getcwd()} is "
                "writable in this image unless you replaced it), or set APP_USER=root"
            )
    return None


class Doctor(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and not getattr(record, "advised", False):
            hint = advice(record.exc_info[1])
            if hint:
                record.msg = f"{record.getMessage()} -- {hint}"
                record.args = ()
                record.advised = True
        return True


def read_mountinfo() -> str:
    try:
        with open("/proc/self/mountinfo") as file:
            return file.read()
    except OSError:
        return ""


def mount_hint(uid: int, filename: str | None) -> str | None:
    """A write refused under a mounted directory the app's user cannot write (a host directory in
    compose's ``volumes:``): the fix is the owner, not the Dockerfile. SQLite names no file: such a
    mount under the app's directory (its working directory) is the likely one."""
    from asgi_launcher.user import unwritable_mounts

    def under(path: str, point: str) -> bool:
        return path == point or path.startswith(point.rstrip("/") + "/")

    mounts = unwritable_mounts(read_mountinfo(), uid, os.getgid())
    if filename:
        path = os.path.abspath(os.fsdecode(filename))
        mounts = [m for m in mounts if under(path, m.point)]
    else:
        mounts = [m for m in mounts if under(m.point, os.getcwd())]
    if not mounts:
        return None
    mount = mounts[0]
    return (
        f"HINT: {mount.point} is mounted owned by UID {mount.uid}, which the app (UID {uid}) may not write: "
        f'run as that owner (compose user: "{mount.uid}:{mount.gid}", or APP_USER={mount.uid}:{mount.gid}), '
        "change its owner on the host, or set APP_USER=root"
    )


def advise(*loggers: logging.Logger) -> None:
    """Add the doctor to every handler of these loggers (Uvicorn's error log shares Gunicorn's)."""
    for logger in loggers:
        for handler in logger.handlers:
            if not any(isinstance(f, Doctor) for f in handler.filters):
                handler.addFilter(Doctor())


# ---- a failed `pip install`: the output's tail -> the tag to use instead
# Most specific first: a missing Rust, a removed module or (on slim) a missing compiler also shows as the
# failed build that the last check reads.

_OLD_PIP = re.compile(r"Please use pip<24\.1")
_RUST = re.compile(
    r"Cargo, the Rust package manager, is not installed"  # maturin (pydantic-core, orjson)
    r"|can't find Rust compiler"  # setuptools-rust (cryptography, bcrypt)
)
_GONE = re.compile(r"No module named '(\w+)[.']|module 'pkgutil' has no attribute 'ImpImporter'")
_CC = r"(?:\S*[/-])?(?:gcc|cc|g\+\+|c\+\+|clang)"
# What the full variants have and the slim ones do not: a compiler, make, -dev headers and their tools.
_NO_TOOLS = re.compile(
    rf"\b(?:{_CC}|make|pkg-config): (?:command )?not found"  # sh, bash
    rf"|'{_CC}'(?: failed)?: No such file"  # setuptools: command 'gcc' failed, unable to execute 'gcc'
    r"|Unknown compiler\(s\)|No CMAKE_C(?:XX)?_COMPILER could be found"  # meson, cmake
    r"|pg_config executable not found|mysql_config not found|fatal error: \S+\.h: No such file"
)
# The steps of a build, not any subprocess pip runs (a failed git clone also "did not run successfully").
_BUILD_FAILED = re.compile(
    r"(?:wheel|\)|egg_info) did not run successfully|Failed to build |Failed building wheel"
    r"|Could not build wheels|metadata-generation-failed"
)
_NO_RELEASE = re.compile(
    r"No matching distribution found for ([^\s;]+)|Package '([^']+)' requires a different Python"
)
_NETWORK = re.compile(r"Retrying \(Retry\(|Could not fetch URL")  # pip's warnings: each retry, the last
# The package whose build failed: pip's summary of failed wheels names it, and a failed metadata build
# stops pip right after it collected the package. The last one of either is the one.
_BUILDING = re.compile(
    r"Failed to build '?(?!installable |one or more )([\w.-]+)|^\s*Collecting ([\w.-]+)", re.M
)


def _pinned(text: str, name: str) -> str:
    """name==version when the output shows the version (a pin, or the sdist pip downloaded), else name."""
    fuzzy = "[-_.]".join(map(re.escape, re.split(r"[-_.]+", name)))  # pydantic-core, pydantic_core-2.14.6
    versions = re.findall(
        rf"Collecting {fuzzy}(?:\[[^\]]*\])?==([^\s;,]+)|[\s/]{fuzzy}-(\d[^\s/]*?)\.(?:tar\.gz|zip)\b",
        text,
        re.IGNORECASE,
    )
    return f"{name}=={''.join(versions[-1])}" if versions else name


def build_advice(output: str, python: tuple[int, int], full: bool) -> str | None:
    """One line on what to change after a failed ``pip install``, from the tail of its output (stdout and
    stderr), or None when the failure is not one a move to this image's Pythons or variants causes.
    ``python``: the image's Python; ``full``: whether it is a full variant (compilers, make, -dev headers)."""
    building = _BUILDING.findall(output)
    name = next(filter(None, building[-1])) if building else ""
    pin = _pinned(output, name) if name else "a package"
    version, older = _version(python), f"use the {tag(OLDEST, full)} tag"
    newer = f"pin a newer {name or 'version'}"
    if _OLD_PIP.search(output):
        return (
            f'HINT: {pin} has metadata that pip 24.1 and later reject: add RUN pip install "pip<24.1" '
            f"before this install (tiangolo's image had pip 24.0), or {newer}"
        )
    if _RUST.search(output):
        return (
            f"HINT: {pin} has no wheel for Python {version} here and building it needs Rust, which the image "
            f"does not have: {f'{older}, or {newer}' if python > OLDEST else f'{newer} (one with a wheel)'}"
        )
    for found in _GONE.finditer(output):
        module = found.group(1)
        removed = REMOVED.get(module) if module else (3, 12)  # pkgutil.ImpImporter: an old setuptools
        if removed and python >= removed:
            how, since = f"imports {module}" if module else "uses pkgutil.ImpImporter", _version(removed)
            return (
                f"HINT: {pin} predates Python {since} (its build {how}, which Python {since} removed): "
                f"{older}, or {newer}"
            )
    if not full and _NO_TOOLS.search(output):
        return (
            f"HINT: building {pin} from source needs build tools that the slim variant does not have: use "
            f"the {tag(python, True)} tag (gcc, make and -dev headers), or RUN apt-get update && apt-get "
            "install -y build-essential (and the -dev package the error names) before this install"
        )
    missing = _NO_RELEASE.findall(output)
    if missing:
        if _NETWORK.search(output) and "(from versions: none)" in output:
            return None  # pip could not reach the index: no matter of the Python
        requirement = missing[-1][0] or _pinned(output, missing[-1][1])
        if python > OLDEST:
            return (
                f"HINT: pip found no release of {requirement} for Python {version}: {older}, where pins "
                f"made for tiangolo's image have theirs, or pin a version that supports Python {version}"
            )
        return (
            f"HINT: pip found no release of {requirement} for Python {version}: pin another version, or "
            "check the name and the index (--index-url, --find-links)"
        )
    if python > OLDEST and _BUILD_FAILED.search(output):
        return (
            f"HINT: {pin} has no wheel for Python {version} here and its source does not build on it: "
            f"{older}, or {newer}"
        )
    return None
