# syntax=docker/dockerfile:1
# kefu: one application image for every service (the container's args pick it:
# `kefu serve <service>`), and a separate models image that the Helm chart copies into pods.
#
#   docker build -t kefu:0.1.0 .                          # application (default target)
#   docker build --target models -t kefu-models:0.1.0 .   # model tree at /opt/kefu/models
#
# Models stay out of the application image on purpose: they are retrained and versioned on
# their own schedule (see docs/operations.md, "Models in pods").

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------- builder
# Locked dependencies (uv.lock, exactly) and the protobuf code generated from proto/.
FROM ${PYTHON_IMAGE} AS builder
ARG UV_VERSION=0.13.9
RUN pip install --no-cache-dir "uv==${UV_VERSION}"
# Compile bytecode now: the runtime's root filesystem is read-only.
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=/usr/local/bin/python3.11
# The same layout as a developer checkout (.venv inside the project), so paths that the code
# resolves relative to the repository (data/, proto/) hold in the image too.
WORKDIR /opt/kefu/app
# Dependencies alone first, so this layer is reused until uv.lock changes.
COPY pyproject.toml uv.lock ./
RUN uv sync --frozen --no-install-project
# The rest of the project; .dockerignore keeps out tests, docs, deploy, caches and models.
COPY . ./
RUN .venv/bin/python -m grpc_tools.protoc -Iproto --python_out=. --grpc_python_out=. \
        --pyi_out=. proto/kefu/v1/events.proto proto/kefu/v1/orders.proto \
 && uv sync --frozen \
 && .venv/bin/python -m compileall -q kefu services bench

# ---------------------------------------------------------------- model-build
# Builds the encoder and default heads from what the project ships (no downloads).
FROM builder AS model-build
RUN KEFU_MODEL_DIR=/opt/kefu/models KEFU_CACHE_DIR=/tmp/kefu-cache .venv/bin/kefu models build \
 && chmod -R a+rX /opt/kefu/models

# ---------------------------------------------------------------- models
# Only the model tree (plus `cp` from the base image for the chart's init container).
FROM ${PYTHON_IMAGE} AS models
COPY --from=model-build /opt/kefu/models /opt/kefu/models
USER 10001:10001

# ---------------------------------------------------------------- runtime
FROM ${PYTHON_IMAGE} AS runtime
# A fixed non-root uid/gid that the chart's securityContext names (runAsUser 10001).
RUN groupadd --system --gid 10001 kefu \
 && useradd --system --uid 10001 --gid kefu --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin kefu \
 && mkdir -p /var/lib/kefu/state /var/lib/kefu/cache /models \
 && chown -R kefu:kefu /var/lib/kefu
# Code and venv stay owned by root: the service user can read but not change them.
COPY --from=builder /opt/kefu/app /opt/kefu/app
# Writable paths are /tmp and /var/lib/kefu (emptyDirs in Kubernetes); everything that
# wants a home or cache directory is pointed there.
ENV PATH=/opt/kefu/app/.venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    XDG_CACHE_HOME=/tmp/.cache \
    MPLCONFIGDIR=/tmp/matplotlib \
    KEFU_WEB_HOST=0.0.0.0 \
    KEFU_STATE_DIR=/var/lib/kefu/state \
    KEFU_CACHE_DIR=/var/lib/kefu/cache \
    KEFU_MODEL_DIR=/models
WORKDIR /opt/kefu/app
USER 10001:10001
# HTTP (metrics, probes) of ingest..orders, and the OrderService's gRPC port.
EXPOSE 8101 8102 8103 8104 8105 8106 50051
ENTRYPOINT ["kefu"]
CMD ["serve", "ingest"]
