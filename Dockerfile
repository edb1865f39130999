# syntax=docker/dockerfile:1
# bkcmdb-synchronizer: a wheel built in one stage, installed into a slim runtime in the next.
#   docker build -t bkcmdb-synchronizer:0.1.0 .
#   docker run --rm -v $PWD/config.yaml:/etc/bkcmdb-synchronizer/config.yaml:ro \
#     -e BKCMDB_CMDB__DSN=mysql://user:pass@db:3306/cmdb -p 8888:8888 -p 9999:9999 bkcmdb-synchronizer:0.1.0
# The Helm chart (charts/bkcmdb-synchronizer) runs it as uid 10001 on a read-only root filesystem.

FROM python:3.11-slim-bookworm AS builder
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY . .
# The project's wheel, then wheels of all its dependencies, so the runtime stage installs offline.
RUN pip wheel --no-deps --wheel-dir /wheels . \
 && pip wheel --wheel-dir /wheels /wheels/bkcmdb_synchronizer-*.whl

FROM python:3.11-slim-bookworm AS runtime
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN groupadd --system --gid 10001 synchronizer \
 && useradd --system --uid 10001 --gid 10001 --home-dir /home/synchronizer --create-home \
      --shell /usr/sbin/nologin synchronizer
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-index --find-links /wheels /wheels/bkcmdb_synchronizer-*.whl
WORKDIR /home/synchronizer
USER 10001:10001
EXPOSE 8888 9999
ENTRYPOINT ["bkcmdb-synchronizer"]
CMD ["run", "--config", "/etc/bkcmdb-synchronizer/config.yaml"]
