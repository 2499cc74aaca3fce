# connector: a scheduled worker. Build: docker build -t connector .
# Run:   docker run --rm --env-file .env -v connector-state:/var/lib/connector connector            (sync)
#        docker run --rm --env-file .env -v connector-state:/var/lib/connector connector sync --dry-run
#        docker run --rm connector demo                                         (emulators, no credentials)
# Schedules (Kubernetes CronJob, docker compose, systemd, cron): deploy/ and README "Running it on a schedule".
FROM python:3.11-slim

# MALLOC_ARENA_MAX: glibc gives each thread that allocates an arena of its own; two keep the
# delivery threads' pages from spreading over many (measured: 254 -> 246 MiB peak at 100k).
ENV PYTHONDONTWRITEBYTECODE=1 \
    MALLOC_ARENA_MAX=2 \
    PYTHONUNBUFFERED=1 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    CONNECTOR_STATE_URL=sqlite:////var/lib/connector/connector.db \
    CONNECTOR_MAPPING_PATH=/app/mappings/salesforce.yaml \
    CONNECTOR_LOG_FORMAT=json

# A fixed, numeric non-root user (Kubernetes runAsNonRoot checks the number) owning only the state directory.
RUN pip install --no-cache-dir uv==0.13.9 \
    && groupadd --system --gid 10001 connector \
    && useradd --system --no-log-init --create-home --uid 10001 --gid 10001 connector \
    && mkdir -p /var/lib/connector && chown 10001:10001 /var/lib/connector

WORKDIR /app
# Dependencies first, from the lock file, so code changes don't reinstall them.
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project --extra postgres
COPY connector ./connector
# The emulators and demo dataset: `connector demo` runs in the image without credentials.
COPY connector_sandbox ./connector_sandbox
COPY mappings ./mappings
RUN uv sync --frozen --no-dev --extra postgres --no-editable

USER 10001:10001
VOLUME ["/var/lib/connector"]
ENTRYPOINT ["connector"]
CMD ["sync"]
