# Command API (write side): POST /transactions -> Kafka.  Port 8000.
#
#   docker build -f Dockerfile.command -t txstats-command:local .
#
# Two stages: the builder makes a virtualenv at /opt/venv from the pinned requirements and our
# package; the runtime stage copies only that virtualenv onto a clean slim image and runs as
# an unprivileged user. Keep the base tag equal in both stages and in Dockerfile.query.

FROM python:3.12.12-slim-bookworm AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src

# Dependencies first: this layer is reused until requirements.txt changes.
COPY requirements.txt ./
RUN pip install --no-cache-dir -r requirements.txt

# Then our code. The write side needs only its own package and `shared`.
COPY pyproject.toml README.md ./
COPY shared/ shared/
COPY command_api/ command_api/
# The smoke check fails the build if the package did not get installed.
RUN pip install --no-cache-dir --no-deps . \
    && python -c "import command_api.main"


FROM python:3.12.12-slim-bookworm AS runtime

LABEL org.opencontainers.image.title="txstats-command-api" \
      org.opencontainers.image.description="txstats command API (write side)"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH

RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin app

COPY --from=builder /opt/venv /opt/venv

# An empty working directory: settings may read an optional `.env` from here, and none is
# baked into the image (configuration comes from the environment).
WORKDIR /app

USER 10001:10001

EXPOSE 8000

HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=3)"]

CMD ["uvicorn", "command_api.main:create_app", "--factory", "--host", "0.0.0.0", "--port", "8000", "--loop", "uvloop", "--http", "httptools"]
