# syntax=docker/dockerfile:1
#
# One image runs any loomflow service:
#   docker build -t loomflow:0.1.0 .
#   docker run --rm -p 50051:50051 loomflow:0.1.0 --services memory --insecure
#
# builder: installs the hash-locked dependencies (requirements/image.lock: the servers with the
#          postgres, redis, anthropic and openai extras) into a virtualenv at /opt/loomflow, then
#          builds the project's two wheels (loomflow-client, loomflow) with a hash-locked build
#          backend and installs them without dependencies: nothing resolves from version ranges.
# runtime: the same Python base plus only that virtualenv; no compilers, no pip cache,
#          no source tree, no RUN step (nothing in it needs a shell), a fixed non-root UID.
#
# The base is pinned by digest (the multi-arch index of python:3.11-slim), so a rebuild starts
# from the same bytes. To move to a newer base, print the tag's current index digest with
#   docker buildx imagetools inspect python:3.11-slim      # the "Digest:" line
# (or `docker pull python:3.11-slim` and `docker inspect --format '{{index .RepoDigests 0}}'`),
# replace the digest below and rebuild; docs/deploy.md ("1. Build the image") records the size.
# (This digest is python:3.11-slim as of Python 3.11.16, read from public build logs: no
# registry can be reached where this file was written.)
ARG PYTHON_IMAGE=python:3.11-slim@sha256:9c900dea9e8fb7e16277c179b555cc72d29a352dbc33cff48ad5a0412fd5bfc7

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# Dependencies first: this layer is reused until a lock file changes.
COPY requirements/image.lock requirements/build.lock requirements/
RUN python -m venv /opt/loomflow \
 && /opt/loomflow/bin/pip install --require-hashes --no-deps -r requirements/image.lock \
 && pip install --require-hashes --no-deps -r requirements/build.lock
# Only what the wheels are built from (.dockerignore allows nothing else into the context).
COPY pyproject.toml README.md ./
COPY services/ services/
COPY clients/python/ clients/python/
RUN pip wheel --no-deps --no-build-isolation --wheel-dir /wheels ./clients/python . \
 && /opt/loomflow/bin/pip install --no-deps /wheels/loomflow_client-*.whl /wheels/loomflow-*.whl \
 && /opt/loomflow/bin/pip check \
 && /opt/loomflow/bin/loomflow serve --help >/dev/null \
 && mkdir -p /empty/data

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="loomflow" \
      org.opencontainers.image.description="Multi-tenant gRPC services for LLM agents" \
      org.opencontainers.image.licenses="Apache-2.0"
# HOME=/tmp: libraries that cache under ~ write to the one writable scratch folder
# (Kubernetes mounts an emptyDir there under a read-only root filesystem).
ENV PATH=/opt/loomflow/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp \
    LOOMFLOW_HOST=0.0.0.0 \
    LOOMFLOW_DATA_DIR=/var/lib/loomflow
COPY --from=builder /opt/loomflow /opt/loomflow
# The embedded-state folder, owned by the runtime user, made without a RUN step.
COPY --from=builder --chown=10001:10001 /empty/data /var/lib/loomflow
# Numeric, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 10001:10001
WORKDIR /var/lib/loomflow
# gRPC (LOOMFLOW_PORT) and Prometheus metrics (LOOMFLOW_METRICS_PORT) defaults.
EXPOSE 50051 9464
ENTRYPOINT ["loomflow", "serve"]
