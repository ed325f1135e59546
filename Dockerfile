# claude-mem: one image for the HTTP server, the generation worker, migrations and the
# operator CLI. The mode is the first argument (server | worker | migrate | shell) or
# CLAUDE_MEM_CONTAINER_MODE; see docker/entrypoint.sh and docs/deploy.md.
#
#   docker build -t claude-mem .
#   docker run --rm -p 127.0.0.1:37877:37877 -v claude-mem-data:/data claude-mem
#
# Build stage: install the package and its runtime extras into a virtualenv, from the source.
FROM python:3.11-slim AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY alembic ./alembic
COPY src ./src
RUN python -m venv /opt/claude-mem \
    && /opt/claude-mem/bin/pip install ".[all]"

# Runtime stage: the virtualenv, the entrypoint and an unprivileged user; no source tree,
# no build tools, no dev dependencies.
FROM python:3.11-slim

ENV PATH=/opt/claude-mem/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    CLAUDE_MEM_DOCKER=1 \
    CLAUDE_MEM_CONTAINER_MODE=server \
    CLAUDE_MEM_DATA_DIR=/data/claude-mem \
    CLAUDE_MEM_SERVER_PORT=37877

COPY docker/entrypoint.sh /usr/local/bin/claude-mem-entrypoint
RUN chmod 0755 /usr/local/bin/claude-mem-entrypoint \
    && groupadd --system --gid 10001 claude-mem \
    && useradd --system --uid 10001 --gid claude-mem --home-dir /home/claude-mem \
        --create-home --shell /usr/sbin/nologin claude-mem \
    && mkdir -p /data/claude-mem \
    && chown -R claude-mem:claude-mem /data

COPY --from=build /opt/claude-mem /opt/claude-mem

USER claude-mem:claude-mem
WORKDIR /home/claude-mem
EXPOSE 37877

# Liveness of the HTTP server (`server` mode). The worker has no port: docker-compose.yml
# disables the check for it (`docker run --no-healthcheck … worker` does the same).
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
    CMD python -c "import os, sys, urllib.request; port = os.environ.get('CLAUDE_MEM_SERVER_PORT') or '37877'; sys.exit(0 if urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=4).status == 200 else 1)"

# No CMD: without arguments the entrypoint takes the mode from CLAUDE_MEM_CONTAINER_MODE.
ENTRYPOINT ["/usr/local/bin/claude-mem-entrypoint"]
