# Build the wheel in one stage and install only the wheel in the next: the image holds no source
# tree, and the page (bridge/web/, package data) is served from site-packages like any install.
FROM python:3.11-slim-bookworm AS wheel
WORKDIR /src
COPY pyproject.toml README.md ./
COPY bridge ./bridge
RUN pip wheel --no-cache-dir --no-deps -w /wheels .

FROM python:3.11-slim-bookworm
WORKDIR /app
COPY --from=wheel /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
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
