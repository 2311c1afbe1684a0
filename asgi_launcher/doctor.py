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


def advise(*loggers: logging.Logger) -> None:
    """Add the doctor to every handler of these loggers (Uvicorn's error log shares Gunicorn's)."""
    for logger in loggers:
        for handler in logger.handlers:
            if not any(isinstance(f, Doctor) for f in handler.filters):
                handler.addFilter(Doctor())


# ---- a failed `pip install`: the output's tail -> the tag to use instead

_ESCAPES = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)")
_OLD_METADATA = re.compile(r"Please use pip<24\.1")
_INVALID_METADATA = re.compile(r"Ignoring version (\S+) of (\S+) since it has invalid metadata")
_RUST = re.compile(
    r"Cargo, the Rust package manager, is not installed"  # maturin (pydantic-core, orjson, rpds-py)
    r"|can't find Rust compiler"  # setuptools-rust (cryptography, bcrypt)
    r"|Do you have cargo in your PATH"  # maturin's own build backend
    r"|\b(?:cargo|rustc):? (?:command )?not found"
    r"|No such file or directory[^\n]*'(?:cargo|rustc)'"
    r"|requires rustc \d"  # a toolchain too old for the crate
)
_REMOVED = re.compile(r"No module named '(\w+)[.']|module 'pkgutil' has no attribute '(ImpImporter)'")
_CC = r"(?:[\w.+-]+-)?(?:gcc|cc|g\+\+|c\+\+|clang)"
_NO_CC = re.compile(
    rf"\b{_CC}: (?:command )?not found"  # sh: 1: gcc: not found, bash: cc: command not found
    rf"|unable to execute '(?:[^'\n]*/)?{_CC}': No such file or directory"
    rf"|command '(?:[^'\n]*/)?{_CC}' failed"  # setuptools; a slim variant has no compiler to fail otherwise
    rf"|No such file or directory: '(?:[^'\n]*/)?{_CC}'"
    r"|Unknown compiler\(s\)"  # meson (numpy 2, scipy)
    r"|No CMAKE_C(?:XX)?_COMPILER could be found"
    r"|no acceptable C compiler found"  # autoconf
)
_NO_MAKE = re.compile(
    r"\bmake: (?:command )?not found|No such file or directory: '(?:[^'\n]*/)?make'"
    r"|unable to find a build program corresponding to \"Unix Makefiles\""
)
# The -dev packages and their tools that the full variants have (psycopg2, mysqlclient, cffi, lxml).
_NO_DEV = re.compile(
    r"pg_config executable not found|mysql_config(?:: | )not found|\bpkg-config: (?:command )?not found"
    r"|was not found in the pkg-config search path|fatal error: [\w/.+-]+\.h: No such file or directory"
)
_BUILD_FAILED = re.compile(
    r"Failed to build |Failed building wheel for |Could not build wheels for |metadata-generation-failed"
    r"|(?:Getting requirements to build wheel|Preparing metadata \([\w.]+\)|python setup\.py egg_info"
    r"|Building wheel for \S+ \([\w.]+\)) did not run successfully"
    r"|(?:Building wheel for \S+ \([\w.]+\)|Running setup\.py install for \S+)"
    r"(?: \.\.\. |: finished with status ')error"
)
_NOT_FOUND = re.compile(r"No matching distribution found for ([^\s;]+)")
_FROM_VERSIONS = re.compile(r"satisfies the requirement (\S+).*\(from versions: ([^)]*)\)")
_IGNORED = re.compile(r"Ignored the following versions that require a different python version: ([^\n]+)")
_DIFFERENT_PYTHON = re.compile(
    r"Package '([^']+)' requires a different Python: \S+ not in '([^']+)'"
    r"|Packages require a different Python\. \S+ not in:\n'([^']+)' \(required by ([^\s)]+)"
)
_NETWORK = re.compile(
    r"Retrying \(Retry\(total=|NewConnectionError|Failed to establish a new connection|Temporary failure in "
    r"name resolution|Name or service not known|Network is unreachable|ProxyError|ConnectTimeoutError"
    r"|ReadTimeoutError|Could not fetch URL|SSLError|CERTIFICATE_VERIFY_FAILED"
)
# Where pip names the package whose build failed, newest pip first; then the last one it collected.
_FAILED_NAMES = (
    re.compile(r"Failed to build '([^'\n]+)' when"),  # pip 25.3+
    re.compile(r"pyproject\.toml based projects \(([^)\n]+)\)"),  # pip 24.1-25.0
    re.compile(
        r"Failed to build installable wheels for some pyproject\.toml based projects\s*\n\W*(\w[^\n]*)"
    ),
    re.compile(r"Could not build wheels for ([^\s,]+)"),
    re.compile(r"Failed building wheel for (\S+)"),
    re.compile(r"^\W*Failed to build (?!installable |one or more )(\S+)", re.MULTILINE),
    re.compile(r"(?:Building wheel for|Running setup\.py install for) (\S+)[^\n]*(?:\.\.\. |status ')error"),
)
_COLLECTING = re.compile(r"^\s*Collecting (\S+)", re.MULTILINE)
_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?")
_SPEC = re.compile(r"(~=|===|==|!=|<=|>=|<|>)\s*(\d+(?:\.\d+)*)(\.\*)?")


def _project(requirement: str) -> str:
    """The project name of a requirement as pip prints it (numpy==1.24.4, fastapi[all]>=0.68)."""
    found = _NAME.match(requirement)
    return found.group(0) if found else requirement


def _pinned(text: str, name: str) -> str:
    """name==version when the output shows which version pip was building, else the name."""
    fuzzy = "[-_.]".join(re.escape(part) for part in re.split(r"[-_.]+", name))
    for pattern in (
        rf"(?:Downloading|Using cached|Processing) (?:\S*/)?{fuzzy}-(\d[^\s/]*?)\.(?:tar\.gz|zip|tar\.bz2)\b",
        rf"Collecting {fuzzy}(?:\[[^\]]*\])?==([^\s;,]+)",
    ):
        versions = re.findall(pattern, text, re.IGNORECASE)
        if versions:
            return f"{name}=={versions[-1]}"
    return name


def _failed(text: str) -> tuple[str, str]:
    """(what to call the package whose build failed, its project name), as precisely as the output says."""
    for pattern in _FAILED_NAMES:
        found = pattern.findall(text)
        if found:
            name = _project(found[-1].strip().strip("'\""))
            return _pinned(text, name), name
    collected = _COLLECTING.findall(text)
    if collected:
        name = _project(collected[-1])
        return _pinned(text, name), name
    return "a package", "version"


def _allows(spec: str, version: tuple[int, ...]) -> bool | None:
    """Whether a version specifier (a Requires-Python, a requirement's) admits this release; None when
    the specifier is not one this reads."""
    for clause in filter(None, (part.strip() for part in spec.split(","))):
        found = _SPEC.fullmatch(clause)
        if not found:
            return None
        op, text, star = found.groups()
        bound = tuple(int(part) for part in text.split("."))
        if star:
            if op not in ("==", "!="):
                return None
            ok = (version[: len(bound)] == bound) == (op == "==")
        else:
            width = max(len(version), len(bound))
            mine, theirs = version + (0,) * (width - len(version)), bound + (0,) * (width - len(bound))
            ok = {
                "<": mine < theirs,
                "<=": mine <= theirs,
                ">": mine > theirs,
                ">=": mine >= theirs,
                "==": mine == theirs,
                "===": mine == theirs,
                "!=": mine != theirs,
                "~=": mine >= theirs and version[: len(bound) - 1] == bound[:-1],
            }[op]
        if not ok:
            return False
    return True


def _target(specs: list[str], python: tuple[int, int]) -> tuple[int, int] | bool | None:
    """The tag's Python to move to when these Requires-Python (of the releases a requirement allows)
    exclude this one: python3.11 when one admits it (his image's pins were made for it), else the nearest
    older tag, else the nearest newer; None when no tag is admitted, False when this does not read them.
    A Python is taken as X.Y.1, a patched release, as the image's is."""
    pythons = sorted({*TAG_PYTHONS, python})
    admitted = {}
    for candidate in pythons:
        answers = [_allows(spec, (*candidate, 1)) for spec in specs]
        if None in answers:
            return False
        admitted[candidate] = any(answers)
    if admitted[python]:
        return False
    if python > OLDEST and admitted[OLDEST]:
        return OLDEST
    older = [candidate for candidate in pythons if candidate < python and admitted[candidate]]
    newer = [candidate for candidate in pythons if candidate > python and admitted[candidate]]
    return older[-1] if older else newer[0] if newer else None


def _requires_python(text: str, requirement: str) -> list[str]:
    """The Requires-Python that kept pip from the releases this requirement allows, newest release first,
    when pip printed them."""
    found = _DIFFERENT_PYTHON.search(text)
    if found:
        return [found.group(2) or found.group(3)]
    ignored = _IGNORED.findall(text)
    if not ignored:
        return []
    wanted = re.sub(r"^\[[^\]]*\]", "", requirement[len(_project(requirement)) :])  # without the extras
    releases = []
    for entry in ignored[-1].split("; "):
        version, _, spec = entry.partition(" Requires-Python ")
        if re.fullmatch(r"\d+(?:\.\d+)*", version.strip()) and spec.strip():
            release = tuple(int(part) for part in version.strip().split("."))
            if not wanted or _allows(wanted, release):
                releases.append((release, spec.strip()))
    return [spec for _, spec in sorted(releases, reverse=True)]


def _no_release(text: str, python: tuple[int, int], full: bool) -> str | None:
    """pip found no release of a requirement that installs on this Python."""
    different = _DIFFERENT_PYTHON.search(text)
    missing = _NOT_FOUND.findall(text)
    if not missing and not different:
        return None
    if missing:
        requirement = missing[-1]
        name = _project(requirement)
    else:
        name = _project(different.group(1) or different.group(4))
        requirement = _pinned(text, name)
    version = _version(python)
    specs = _requires_python(text, requirement)
    target = _target(specs, python) if specs else False
    spec = specs[0] if specs else None
    if target is None:
        return (
            f"HINT: {requirement} runs on no Python this image has a tag for (Requires-Python {spec}): "
            f"pin a version of {name} that supports Python {version}"
        )
    if target:
        change = "a newer" if target < python else "an older"
        return (
            f"HINT: {requirement} does not support Python {version} (Requires-Python {spec}): use the "
            f"{tag(target, full)} tag, or pin {change} {name}"
        )
    listed = [found for found in _FROM_VERSIONS.findall(text) if _project(found[0]) == name]
    versions = listed[-1][1].strip() if listed else "none"
    if versions == "none" and _NETWORK.search(text):
        return None  # pip could not reach the index: not a matter of the Python
    older = tag(OLDEST, full)
    if versions != "none":
        if python > OLDEST:
            return (
                f"HINT: {requirement} has no release for Python {version}: use the {older} tag, where "
                "pins made for tiangolo's image have theirs, or pin one of the versions pip lists above"
            )
        return (
            f"HINT: {requirement} has no release for Python {version}: pin one of the versions pip "
            "lists above"
        )
    if python > OLDEST:
        return (
            f"HINT: pip found no release of {requirement} for Python {version}: if it has releases for "
            f"older Pythons, use the {older} tag; otherwise check the name and the index (--index-url, "
            "--find-links)"
        )
    return (
        f"HINT: pip found no release of {requirement} for Python {version}: check the name, the version "
        "and the index (--index-url, --find-links)"
    )


def build_advice(output: str, python: tuple[int, int], full: bool) -> str | None:
    """One line on what to change after a failed ``pip install``, from the tail of its output (stdout and
    stderr), or None when the failure is not one a move to this image's Pythons causes. ``python``: the
    image's Python; ``full``: whether it is a full variant (compilers, make, -dev headers)."""
    text = _ESCAPES.sub("", output).replace("\r\n", "\n").replace("\r", "\n")
    version = _version(python)
    older = tag(OLDEST, full)
    if _OLD_METADATA.search(text):
        invalid = _INVALID_METADATA.findall(text)
        pin, name = (
            (f"{invalid[-1][1]}=={invalid[-1][0]}", invalid[-1][1]) if invalid else ("A pin", "version")
        )
        return (
            f'HINT: {pin} has metadata that pip 24.1 and later reject: add RUN pip install "pip<24.1" '
            f"before this install (tiangolo's image had pip 24.0), or pin a newer {name}"
        )
    if _RUST.search(text):
        pin, name = _failed(text)
        if python > OLDEST:
            return (
                f"HINT: {pin} has no wheel for Python {version} here and building it needs Rust, which the "
                f"image does not have: use the {older} tag, where the pins of tiangolo's image have wheels, "
                f"or pin a newer {name}"
            )
        return (
            f"HINT: {pin} has no wheel for Python {version} here and building it needs Rust, which the image "
            f"does not have: pin a newer {name} (one with a wheel), or install Rust (https://rustup.rs) first"
        )
    for found in _REMOVED.finditer(text):
        module = found.group(1) or "pkgutil.ImpImporter"
        removed = (3, 12) if found.group(2) else REMOVED.get(module)
        if removed and python >= removed:
            pin, name = _failed(text)
            how = "uses pkgutil.ImpImporter" if found.group(2) else f"imports {module}"
            return (
                f"HINT: {pin} predates Python {_version(removed)} (its build {how}, which Python "
                f"{_version(removed)} removed): use the {older} tag, or pin a newer {name}"
            )
    if not full:
        tool = "a C compiler" if _NO_CC.search(text) else "make" if _NO_MAKE.search(text) else None
        if tool:
            pin, _ = _failed(text)
            return (
                f"HINT: building {pin} from source needs {tool}, which the slim variant does not have: use "
                f"the {tag(python, True)} tag (gcc, make and -dev headers), or RUN apt-get update && "
                "apt-get install -y build-essential before this install"
            )
        if _NO_DEV.search(text):
            pin, _ = _failed(text)
            return (
                f"HINT: building {pin} from source needs -dev files that the slim variant does not have: "
                f"use the {tag(python, True)} tag (gcc, make and -dev headers), or RUN apt-get update && "
                "apt-get install -y build-essential and the -dev package the error above names"
            )
    hint = _no_release(text, python, full)
    if hint:
        return hint
    if _BUILD_FAILED.search(text):
        pin, name = _failed(text)
        if python > OLDEST:
            return (
                f"HINT: {pin} has no wheel for Python {version} here and its source does not build on it: "
                f"use the {older} tag, where the pins of tiangolo's image have wheels, or pin a newer {name}"
            )
        return (
            f"HINT: {pin} has no wheel for Python {version} here and its source did not build: pin a newer "
            f"{name} (one with a wheel), or install what the error above says is missing"
        )
    return None
