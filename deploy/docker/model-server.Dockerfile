# syntax=docker/dockerfile:1
# The model server (imgclf serve: TF Serving's REST and gRPC APIs, dynamic batching, hot version swaps).
#
#   docker build -f deploy/docker/model-server.Dockerfile -t imgclf-model-server .   # from the repository root
#   docker run -p 8500:8500 -p 8501:8501 -v "$PWD/registry:/models:ro" -v "$PWD/tfs:/config:ro" imgclf-model-server
#
# /config holds the files `imgclf models tfserving-config --watch` keeps current (models.config with
# version labels, batching.config); /models is the registry they point into. The same two volumes
# work with the official tensorflow/serving image. For NVIDIA GPUs build with
#   --build-arg EXTRA_PACKAGES="tensorflow[and-cuda]==2.21.0"
# and run with --gpus all. Runs as uid 10001.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ARG EXTRA_PACKAGES=""
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md requirements.lock ./
COPY src ./src
# requirements.lock pins every package; as constraints it pins the runtime ones without the test tools.
# hadolint ignore=SC2086
RUN pip install --constraint requirements.lock . ${EXTRA_PACKAGES}

FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 imgclf \
    && useradd --system --uid 10001 --gid imgclf --create-home --home-dir /home/imgclf imgclf \
    && mkdir -p /models /config
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1
USER 10001:10001
WORKDIR /home/imgclf
EXPOSE 8500 8501
HEALTHCHECK --interval=15s --timeout=3s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8501/healthz', timeout=2)"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["imgclf", "serve"]
CMD ["--model-config-file", "/config/models.config", "--model-config-file-poll-wait-seconds", "5", \
     "--enable-batching", "--batching-parameters-file", "/config/batching.config", \
     "--rest-api-port", "8501", "--grpc-port", "8500", "--shutdown-grace-seconds", "30"]
