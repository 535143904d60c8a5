# One image for every Kassa process; the command chooses which:
#   python -m checkout | order | payment | warehouse | pricing | promotion | notification | gateway | devstack.sandbox
#   python -m devstack.smtp_sink   (a development SMTP sink that keeps mail in a folder; compose.yaml's smtp)
#   kassa migrate      (the migration job: once per release, before the new services start)
# Configuration is the same KASSA_* environment as everywhere else (README "Configuration", "Deploying").
#
#   docker build -t kassa:dev .
#   docker run --rm -e KASSA_DATABASE_URL=... kassa:dev kassa migrate
#   docker run --rm -e ... -e KASSA_CHECKOUT_ADDR=0.0.0.0:50051 kassa:dev python -m checkout
#
# No HEALTHCHECK: Kubernetes probes the gRPC health service and the gateway's /healthz and /readyz itself
# (deploy/k8s); compose.yaml runs `python -m infra.probe` for its health checks.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# -- build: a virtualenv with the pinned runtime dependencies and Kassa itself ------------------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python -m venv /opt/kassa
# Dependencies first, from pyproject.toml alone, so a code change reuses this layer.
COPY pyproject.toml ./
COPY deploy/docker/requirements.py deploy/docker/requirements.py
RUN python deploy/docker/requirements.py pyproject.toml > /tmp/requirements.txt \
 && /opt/kassa/bin/pip install --requirement /tmp/requirements.txt
COPY kernel kernel
COPY infra infra
COPY devstack devstack
COPY gen gen
COPY checkout checkout
COPY order order
COPY payment payment
COPY warehouse warehouse
COPY pricing pricing
COPY promotion promotion
# notification/templates/*.txt|*.html are package data (pyproject.toml): the install below puts them in the image.
COPY notification notification
COPY gateway gateway
# --no-deps: everything it needs is installed above, without the local stack's server wheels (requirements.py).
RUN /opt/kassa/bin/pip install --no-deps . \
 && /opt/kassa/bin/python -m compileall -q /opt/kassa/lib

# -- runtime: slim Python, the virtualenv, an unprivileged user -------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="kassa" \
      org.opencontainers.image.description="Kassa checkout services, gateway and migrations (one image, the command chooses)"
RUN groupadd --system --gid 10001 kassa \
 && useradd --system --uid 10001 --gid kassa --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin kassa
COPY --from=build /opt/kassa /opt/kassa
ENV PATH=/opt/kassa/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    KASSA_ENV=production
# Nothing is written at run time (the root filesystem may be read-only) but the sandbox provider's ledger,
# which KASSA_SANDBOX_DB points at a volume, and the development SMTP sink's folder (--dir).
USER 10001:10001
# gateway 8080, services 50051-50057, sandbox provider 8090 (each overridable by KASSA_<NAME>_ADDR).
EXPOSE 8080 50051 50052 50053 50054 50055 50056 50057 8090
CMD ["python", "-m", "gateway"]
