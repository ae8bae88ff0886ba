# syntax=docker/dockerfile:1
# The prediction API (imgclf gateway under gunicorn with uvicorn workers).
#
#   docker build -f deploy/docker/gateway.Dockerfile -t imgclf-gateway .      # from the repository root
#   docker run -p 8000:8000 -v "$PWD/registry:/models" \
#     -e IMGCLF_DATABASE_URL=postgresql+psycopg://... -e IMGCLF_REDIS_URL=redis://... \
#     -e IMGCLF_BACKEND=grpc://model-server:8500 imgclf-gateway
#
# Settings are IMGCLF_* environment variables (README, "Gateway"). The registry is mounted at /models:
# the gateway reads model cards, routing state and reference profiles from it. Runs as uid 10001.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md requirements.lock ./
COPY src ./src
# requirements.lock pins every package; as constraints it pins the runtime ones without the test tools.
RUN pip install --constraint requirements.lock .

FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 imgclf \
    && useradd --system --uid 10001 --gid imgclf --create-home --home-dir /home/imgclf imgclf \
    && mkdir -p /models /var/lib/imgclf \
    && chown imgclf:imgclf /var/lib/imgclf
COPY --from=build /opt/venv /opt/venv
COPY deploy/gunicorn.conf.py /etc/imgclf/gunicorn.conf.py
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    IMGCLF_BIND=0.0.0.0:8000 \
    IMGCLF_REGISTRY=/models \
    IMGCLF_SPOOL_DIR=/var/lib/imgclf/spool \
    IMGCLF_IMAGE_STORE_DIR=/var/lib/imgclf/images \
    PROMETHEUS_MULTIPROC_DIR=/tmp/imgclf-prometheus
USER 10001:10001
WORKDIR /home/imgclf
EXPOSE 8000
# Liveness only: /readyz (predictions can be answered) is for load balancers, not for restarts.
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"]
STOPSIGNAL SIGTERM
CMD ["gunicorn", "--config", "/etc/imgclf/gunicorn.conf.py"]
