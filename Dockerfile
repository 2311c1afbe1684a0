# FastAPI/ASGI server image: Gunicorn managing Uvicorn workers, sized for the container.
#
#   docker compose up                                   this repo's app (target "app", the default)
#   docker build --target base -t asgi-server:base .    drop-in for tiangolo/uvicorn-gunicorn-fastapi:
#                                                       FROM asgi-server:base + COPY ./app /app
# Hosts without a registry: scripts/build-base-image.sh, then --build-arg PYTHON_IMAGE=local/python:3.13-slim
ARG PYTHON_IMAGE=python:3.13-slim

# ---- builder: the virtual environment, so the runtime stages carry no pip cache or build leftovers
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python3 -m venv /opt/venv
# Requirements before code: editing the app or the launcher does not reinstall the dependencies.
COPY requirements.txt /tmp/requirements.txt
RUN --mount=type=cache,target=/root/.cache/pip \
    /opt/venv/bin/pip install -r /tmp/requirements.txt
COPY pyproject.toml /src/
COPY asgi_launcher /src/asgi_launcher
RUN --mount=type=cache,target=/root/.cache/pip \
    /opt/venv/bin/pip install --no-deps /src

# ---- base: Python, the server, /start.sh, /start-reload.sh, /gunicorn_conf.py; no app of ours
FROM ${PYTHON_IMAGE} AS base
ARG APP_UID=10001
LABEL org.opencontainers.image.title="asgi-server" \
      org.opencontainers.image.description="Gunicorn + Uvicorn workers for FastAPI/ASGI apps, tiangolo/uvicorn-gunicorn compatible" \
      org.opencontainers.image.licenses="MIT"
# A fixed UID, so volumes and Kubernetes' runAsUser can rely on it. No login shell, no home in use.
RUN groupadd --gid "${APP_UID}" app \
    && useradd --uid "${APP_UID}" --gid app --no-log-init --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin app
# The venv belongs to the app user so that derived images can `RUN pip install -r requirements.txt`
# as in tiangolo's docs; run with a read-only root filesystem to keep it immutable in production.
COPY --from=builder --chown=app:app /opt/venv /opt/venv
COPY scripts/start.sh /start.sh
COPY scripts/start-reload.sh /start-reload.sh
COPY scripts/healthcheck.sh /usr/local/bin/healthcheck
COPY gunicorn_conf.py /gunicorn_conf.py
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HEALTHCHECK_PATH=/
WORKDIR /app
USER ${APP_UID}:${APP_UID}
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
