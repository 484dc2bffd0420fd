# CartSnitch Hub: REST API + Socket.IO hub. Dependencies first (cached layer), source second, non-root user.
FROM python:3.11-slim AS base

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1

RUN groupadd --system --gid 10001 hub && useradd --system --uid 10001 --gid hub --home-dir /app hub
WORKDIR /app

# Dependencies only: this layer is rebuilt when pyproject.toml changes, not when the source does.
COPY pyproject.toml README.md ./
RUN mkdir -p hub rest channels && touch hub/__init__.py rest/__init__.py channels/__init__.py \
    && pip install . && pip uninstall -y cartsnitch-hub && rm -rf hub rest channels build *.egg-info

COPY hub ./hub
COPY rest ./rest
COPY channels ./channels
RUN pip install --no-deps . && rm -rf build *.egg-info

USER hub
ENV CARTSNITCH_HOST=0.0.0.0 CARTSNITCH_PORT=8000
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=2).status == 200 else 1)"]
CMD ["python", "-m", "hub"]
