# FastAPI/ASGI server image: Gunicorn managing Uvicorn workers, sized for the container.
#
#   docker compose up                        this repo's app (target "app", the default)
#   scripts/build.sh python3.11 ... | all    the drop-in tags for tiangolo/uvicorn-gunicorn-fastapi (target
#                                            "base"), each on its Python image: python3.X is the full one
#                                            (compilers, make, -dev headers), python3.X-slim the slim one
# Hosts without a registry: scripts/build.sh builds the Python image from Debian packages first.
ARG PYTHON_IMAGE=python:3.13-slim

# ---- builder: the virtual environment and its SBOM; the runtime stages carry no pip cache or tools
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
# --system-site-packages: pip refuses `pip install --user` in an isolated venv, and derived
# Dockerfiles written for tiangolo's image use it.
RUN python3 -m venv --system-site-packages /opt/venv \
    && python3 -m venv /opt/sbom-tool
# Locks before code: editing the app or the launcher does not reinstall the dependencies.
# --no-deps: the lock is complete, so nothing is resolved and the base's pip, whatever its version
# (bookworm's 23.0.1 to today's), installs exactly the list; pip check proves it is whole.
COPY requirements.txt requirements-sbom.txt /tmp/
RUN --mount=type=cache,target=/root/.cache/pip \
    /opt/venv/bin/pip install --no-deps --require-hashes -r /tmp/requirements.txt \
    && /opt/venv/bin/pip check \
    && /opt/sbom-tool/bin/pip install --no-deps --require-hashes -r /tmp/requirements-sbom.txt \
    && /opt/sbom-tool/bin/pip check
COPY pyproject.toml /src/
COPY asgi_launcher /src/asgi_launcher
# The SBOM's schema check takes 5 s natively and a quarter of an hour under emulation: scripts/build.sh
# turns it off (--no-validate) for a foreign architecture only.
ARG SBOM_VALIDATE=--validate
# pip, pip3 and pip3.X go through the doctor: pip's output unchanged, then one line naming the tag to
# use when a pin does not build on this one. `python -m pip`, or a pip that upgrades itself, skips it.
RUN --mount=type=cache,target=/root/.cache/pip \
    /opt/venv/bin/pip install --no-deps /src \
    && for pip in /opt/venv/bin/pip /opt/venv/bin/pip3 /opt/venv/bin/pip3.*; do \
         printf '#!/opt/venv/bin/python\nfrom asgi_launcher.pipdoctor import main\nmain()\n' >"$pip"; \
       done \
    && /opt/sbom-tool/bin/cyclonedx-py environment "$SBOM_VALIDATE" --pyproject /src/pyproject.toml \
       --output-format JSON --output-reproducible -o /opt/sbom.cdx.json /opt/venv/bin/python

# ---- base: Python, the server, /start.sh, /start-reload.sh, /gunicorn_conf.py, tiangolo's sample app
FROM ${PYTHON_IMAGE} AS base
ARG APP_UID=10001
LABEL org.opencontainers.image.title="asgi-server" \
      org.opencontainers.image.description="Gunicorn + Uvicorn workers for FastAPI/ASGI apps, tiangolo/uvicorn-gunicorn compatible" \
      org.opencontainers.image.licenses="MIT" \
      dev.asgi-server.sbom="/usr/share/doc/asgi-server/sbom.cdx.json"
# No USER: derived images build as root, as on tiangolo's image (apt-get, adduser, chmod). At run
# time /start.sh switches to this user (APP_USER), so the app never runs as root. /app is the app
# user's (GID 0 for arbitrary UIDs) so that the app can create files there, as SQLite does; /root
# is traversable so that packages a build put there with `pip install --user` stay importable.
# adduser and addgroup, which derived Dockerfiles call as root: Debian trixie's slim images dropped
# them, bookworm's (tiangolo's tags) had them.
# hadolint ignore=DL3008
RUN if ! command -v adduser >/dev/null; then \
        apt-get update && apt-get install -y --no-install-recommends adduser \
        && apt-get clean && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin; \
    fi \
    && groupadd --gid "${APP_UID}" asgi \
    && useradd --uid "${APP_UID}" --gid asgi --no-log-init --create-home --home-dir /home/asgi \
       --shell /usr/sbin/nologin asgi \
    && install -d -o asgi -g 0 -m 775 /app \
    && chmod 711 /root
COPY --from=builder /opt/venv /opt/venv
COPY --from=builder /opt/sbom.cdx.json /usr/share/doc/asgi-server/sbom.cdx.json
COPY scripts/start.sh /start.sh
COPY scripts/start-reload.sh /start-reload.sh
COPY scripts/healthcheck.sh /usr/local/bin/healthcheck
COPY gunicorn_conf.py /gunicorn_conf.py
COPY sample/main.py /app/main.py
# Last on PATH, so only where no real make exists (the slim tags): `make: not found`, then the tag to use.
COPY scripts/hints/ /usr/lib/asgi-server/hints/
ENV PATH=/opt/venv/bin:$PATH:/usr/lib/asgi-server/hints \
    PYTHONPATH=/app \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HEALTHCHECK_PATH=/
WORKDIR /app
# Port 80 as a non-root user: Docker >= 20.10 sets net.ipv4.ip_unprivileged_port_start=0 in containers.
# 9100: Prometheus metrics of all workers (METRICS_PORT), served by the master.
EXPOSE 80 9100
# Checks run every 5 s; failures during the first 60 s (slow model loads) do not count.
HEALTHCHECK --interval=5s --timeout=5s --start-period=60s --retries=3 CMD ["healthcheck"]
CMD ["/start.sh"]

# ---- app (default): this repository's app and pre-start script on top of base
FROM base AS app
ENV HEALTHCHECK_PATH=/health
COPY prestart.sh /app/prestart.sh
COPY app /app/app
