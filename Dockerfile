# syntax=docker/dockerfile:1
# The m3stripe operator image: `docker build -t ghcr.io/m3stripe/m3stripe-operator:0.1.0 .`
#
# Built from this repository alone (pyproject.toml, README.md, operator/); dependencies come from
# PyPI as pyproject.toml pins them. Pin the base by digest too (python:3.11-slim@sha256:...) where
# builds must be reproducible; the minor tag keeps Python 3.11 and takes its patch releases.
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
# A virtualenv is one directory to copy into the runtime stage, without pip's build leftovers.
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Metadata first: the source changes more often than the project description.
COPY pyproject.toml README.md ./
COPY operator ./operator
# pip compiles the .pyc files here; the runtime root filesystem is read-only.
RUN pip install --no-cache-dir . \
 && m3stripe --help >/dev/null

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="m3stripe-operator" \
      org.opencontainers.image.description="Kubernetes operator that sends m3ter Bills to Stripe" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/m3stripe/m3stripe-operator"
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH
# A named user for tools that look the UID up; Kubernetes' runAsNonRoot needs the numeric USER.
RUN groupadd --system --gid 10001 m3stripe \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin m3stripe
COPY --from=build /opt/venv /opt/venv
USER 10001:10001
WORKDIR /tmp
# 8080: kopf's liveness endpoint (/healthz); 9090: Prometheus metrics (/metrics).
EXPOSE 8080 9090
ENTRYPOINT ["m3stripe", "run"]
# For `docker run` by hand: one process, no peering object needed. The Kubernetes manifests always
# pass their own arguments (--peering=..., --liveness=..., and --namespace in single-namespace).
CMD ["--standalone", "--liveness=http://0.0.0.0:8080/healthz", "--log-json"]
