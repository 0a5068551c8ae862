# syntax=docker/dockerfile:1
# One image for every role: `llmsvc operator | router | pull | sim | render | crd`.
#   docker build -t llmsvc/llmservice-operator:0.1.0 .
# Stage 1 builds wheels: the dependencies first (cached until pyproject.toml changes), then the
# project itself. Stage 2 installs them into a clean slim image and runs as a non-root user.
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
# Dependencies only: the metadata plus an empty package, so this layer survives source edits.
# setuptools' build/ and egg-info of the empty package go too: COPY keeps the sources' older
# mtimes, so a leftover build/lib/llmsvc/__init__.py (empty, newer) would end up in the wheel.
COPY pyproject.toml README.md ./
RUN mkdir -p operator/llmsvc && touch operator/llmsvc/__init__.py \
    && pip wheel --wheel-dir /wheels/deps . \
    && rm -f /wheels/deps/llmservice_operator-*.whl \
    && rm -rf build operator
# The project itself.
COPY operator/ operator/
RUN pip wheel --no-deps --wheel-dir /wheels/app .

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="llmservice-operator" \
      org.opencontainers.image.description="Kubernetes operator that serves large language models with vLLM: operator, router, weight puller and simulator in one image" \
      org.opencontainers.image.source="https://github.com/llmsvc/llmservice-operator" \
      org.opencontainers.image.url="https://github.com/llmsvc/llmservice-operator" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="0.1.0"
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
RUN --mount=type=bind,from=build,source=/wheels/deps,target=/wheels/deps \
    pip install --no-index --find-links=/wheels/deps /wheels/deps/*.whl
RUN --mount=type=bind,from=build,source=/wheels/app,target=/wheels/app \
    pip install --no-index --no-deps /wheels/app/*.whl
# Numeric, so Kubernetes can verify runAsNonRoot without reading /etc/passwd.
USER 10001:10001
WORKDIR /tmp
EXPOSE 8000 8080 9090
ENTRYPOINT ["llmsvc"]
CMD ["operator"]
