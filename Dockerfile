FROM python:3.11-slim-bookworm
WORKDIR /app
COPY pyproject.toml README.md ./
COPY bridge ./bridge
COPY web ./web
# Editable, so the page in /app/web sits where the package looks for it.
RUN pip install --no-cache-dir -e .
# Inside a container the published ports are the boundary, so it listens on every interface,
# and for that very reason `serve` refuses to start (exit 2, one line) without a password:
#   -e SKYBELL_BRIDGE_SERVER_USERNAME=admin -e SKYBELL_BRIDGE_SERVER_PASSWORD_FILE=/run/secrets/pw
ENV SKYBELL_BRIDGE_SERVER_HOST=0.0.0.0 \
    SKYBELL_BRIDGE_SERVER_RTSP_HOST=0.0.0.0 \
    SKYBELL_BRIDGE_STORAGE_CLIPS_DIR=/data/clips
VOLUME /data
EXPOSE 1984 8554
ENTRYPOINT ["skybell-bridge"]
CMD ["serve"]
