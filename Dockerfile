# CartSnitch Hub: REST API + Socket.IO hub. Dependencies first (cached layer), source second, non-root user.
FROM python:3.11-slim AS base

# PYTHONSAFEPATH: `python -m hub` imports from site-packages only, never from the (writable) working directory
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PYTHONSAFEPATH=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1

RUN groupadd --system --gid 10001 hub \
    && useradd --system --uid 10001 --gid hub --home-dir /data --no-create-home hub
WORKDIR /app

# Dependencies only: this layer is rebuilt when pyproject.toml changes, not when the source does.
COPY pyproject.toml README.md ./
RUN mkdir -p hub rest channels && touch hub/__init__.py rest/__init__.py channels/__init__.py \
    && pip install . && pip uninstall -y cartsnitch-hub && rm -rf hub rest channels build *.egg-info

COPY hub ./hub
COPY rest ./rest
COPY channels ./channels
RUN pip install --no-deps . && rm -rf build *.egg-info

# The code stays root-owned and read-only to the hub user. The working directory is /data, the one directory the
# hub user owns: with no settings (the embedded default) the SQLite database cartsnitch-hub.db and its dev-mode
# secrets cartsnitch-hub.db.secrets.json are created there; mount a volume on /data to keep them. A deployment
# that sets CARTSNITCH_DATABASE_URL and CARTSNITCH_REDIS_URL writes nothing there (compose and Kubernetes run the
# image with a read-only root file system).
RUN install -d --owner hub --group hub --mode 0700 /data
WORKDIR /data

USER hub
ENV CARTSNITCH_HOST=0.0.0.0 CARTSNITCH_PORT=8000
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=2).status == 200 else 1)"]
CMD ["python", "-m", "hub"]
