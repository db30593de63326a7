# syntax=docker/dockerfile:1
#
# One image runs any loomflow service:
#   docker build -t loomflow:0.1.0 .
#   docker run --rm -p 50051:50051 loomflow:0.1.0 --services memory --insecure
#
# builder: builds the project's wheel from the source tree and installs it, with its
#          dependencies, into a virtualenv at /opt/loomflow.
# runtime: the same Python base plus only that virtualenv; no compilers, no pip cache,
#          no source tree, no RUN step (nothing in it needs a shell), a fixed non-root UID.

ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python -m venv /opt/loomflow
# Only what the wheel is built from (.dockerignore allows nothing else into the context).
COPY pyproject.toml README.md ./
COPY services/ services/
COPY clients/python/ clients/python/
RUN pip wheel --no-deps --wheel-dir /wheels . \
 && /opt/loomflow/bin/pip install /wheels/loomflow-*.whl \
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
