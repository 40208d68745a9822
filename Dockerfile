# crossrank serve on CPU: ONNX Runtime, non-root, readiness health check.
#   docker build -t crossrank .                                      # models mounted at /models at run time
#   docker build -t crossrank --build-arg PREFETCH_MODELS="cross-encoder/ms-marco-MiniLM-L6-v2" .
#   docker run -p 8080:8080 --cpus 4 crossrank --model cross-encoder/ms-marco-MiniLM-L6-v2
FROM python:3.11-slim-bookworm

ARG CROSSRANK_EXTRAS=server,export
ARG TORCH_VERSION=2.13.0
# space-separated hub ids downloaded and exported to ONNX into the image; empty: mount /models instead
ARG PREFETCH_MODELS=""

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    HF_HOME=/models \
    CROSSRANK_HOST=0.0.0.0 \
    CROSSRANK_PORT=8080 \
    CROSSRANK_DRAIN_SECONDS=5

RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin crossrank \
    && mkdir -p /models /app \
    && chown crossrank:crossrank /models

WORKDIR /app
COPY pyproject.toml README.md LICENSE ./
COPY src ./src
# the exact set: CPU torch (for exporting models that ship only PyTorch weights), then crossrank
RUN pip install --no-cache-dir "torch==${TORCH_VERSION}" --index-url https://download.pytorch.org/whl/cpu \
    && pip install --no-cache-dir "/app[${CROSSRANK_EXTRAS}]"
COPY --chmod=0755 docker/entrypoint.sh /usr/local/bin/crossrank-entrypoint

USER 10001:10001
RUN crossrank-entrypoint prefetch ${PREFETCH_MODELS}

EXPOSE 8080
VOLUME ["/models"]
HEALTHCHECK --interval=10s --timeout=3s --start-period=300s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/.well-known/ready', timeout=2).status != 204)"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["crossrank-entrypoint"]
CMD ["serve"]
