# picseek in a container: `picseek serve` on port 8000 with a token required, the library on a volume (/data), the
# photos on a read-only volume (/photos). A thin wrapper over scripts/install.sh, the install steps CI runs too.
#
#   docker build -t picseek .
#   docker run -d -p 8000:8000 -e PICSEEK_TOKEN=$(openssl rand -hex 16) \
#     -v picseek-data:/data -v ~/Pictures:/photos:ro picseek
#
# compose.yaml puts nginx in front; docs/deployment.md ("Container") says what was and was not exercised.
FROM python:3.11-slim

# No torch by default. Where EXTRAS need it (torch, dev), CPU torch from PyTorch's own index (PyPI's Linux torch is
# the CUDA build, several GB); empty: pip's own index.
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ARG EXTRAS=server

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1

COPY . /tmp/picseek-src
RUN bash /tmp/picseek-src/scripts/install.sh --venv /opt/picseek --extras "$EXTRAS" \
        ${TORCH_INDEX:+--torch-index "$TORCH_INDEX"} \
    && rm -rf /tmp/picseek-src \
    && useradd --system --uid 10001 --user-group --home-dir /data --shell /usr/sbin/nologin picseek \
    && mkdir -p /data /photos && chown picseek:picseek /data

# Everything picseek writes lives on /data: the library, downloaded models, derived caches.
ENV PATH=/opt/picseek/bin:$PATH HOME=/data PICSEEK_LIBRARY=/data/library PICSEEK_CACHE_DIR=/data/cache \
    HF_HOME=/data/huggingface
VOLUME ["/data", "/photos"]
USER picseek
WORKDIR /data
EXPOSE 8000

# /api/status answers as soon as the server is up (the model loads later, on the first search).
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/api/status', timeout=4)"]

# --host 0.0.0.0 makes the server refuse to start without PICSEEK_TOKEN; --require-token keeps it so for every write;
# --watch follows the photo folder (new photos appear by themselves; a re-scan every watch_rescan seconds as well).
ENTRYPOINT ["picseek"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000", "--require-token", "--watch", "/photos"]
