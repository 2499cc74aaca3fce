# connector: a scheduled worker. Build: docker build -t connector .
# Run:   docker run --env-file .env -v connector-state:/state connector            (sync)
#        docker run --env-file .env -v connector-state:/state connector sync --dry-run
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PROJECT_ENVIRONMENT=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    CONNECTOR_STATE_URL=sqlite:////state/connector.db \
    CONNECTOR_MAPPING_PATH=/app/mappings/salesforce.yaml \
    CONNECTOR_LOG_FORMAT=json

RUN pip install --no-cache-dir uv \
    && useradd --system --create-home --uid 10001 connector \
    && mkdir -p /state && chown connector /state

WORKDIR /app
# Dependencies first, from the lock file, so code changes don't reinstall them.
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project --extra postgres
COPY connector ./connector
COPY connector_sandbox ./connector_sandbox
COPY mappings ./mappings
RUN uv sync --frozen --no-dev --extra postgres --no-editable

USER connector
VOLUME ["/state"]
ENTRYPOINT ["connector"]
CMD ["sync"]
