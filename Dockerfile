# The rendezvous server, installed the same way as in the README (pip install of this project).
#   docker build -t qrlink-rendezvous .
# How to run it (settings, a mounted TOML file, metrics, trusted_proxies): docs/deployment.md, "Docker".
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY rendezvous ./rendezvous
COPY qrlink_client ./qrlink_client
RUN pip install --no-cache-dir '.[redis]' && useradd --system rendezvous
USER rendezvous
# Inside a container 127.0.0.1 is the container's own loopback: the server, and the separate metrics port if
# metrics_port is set, listen on every interface of the container. Publish the ports on the host's loopback
# (docker run -p 127.0.0.1:8108:8108) so that only the reverse proxy on the host reaches them.
ENV RENDEZVOUS_HOST=0.0.0.0 \
    RENDEZVOUS_METRICS_HOST=0.0.0.0
EXPOSE 8108
# /health answers 200 while the session store does. The port comes from the same settings the server reads
# (RENDEZVOUS_PORT, or the file RENDEZVOUS_CONFIG names); python, since slim images have no curl.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request; from rendezvous.config import load_settings; urllib.request.urlopen(f'http://127.0.0.1:{load_settings().port}/health', timeout=4)"]
CMD ["rendezvous", "serve"]
