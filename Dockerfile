# The rendezvous server, installed the same way as in the README (pip install of this project).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY rendezvous ./rendezvous
COPY qrlink_client ./qrlink_client
RUN pip install --no-cache-dir '.[redis]' && useradd --system rendezvous
USER rendezvous
EXPOSE 8108
ENV RENDEZVOUS_HOST=0.0.0.0
CMD ["rendezvous", "serve"]
