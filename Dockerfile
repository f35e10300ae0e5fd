# Worker images for the two Prefect work pools (see prefect.yaml and README "Deploying"):
#
#   docker build --target cpu   -t lawscreen:cpu   .   # crawl, classify, notify, rescore: no torch
#   docker build --target train -t lawscreen:train .   # bootstrap, train, export: torch with CUDA
#
# Each image runs a Prefect worker for its pool; flows find the code in /app (prefect.yaml's pull step).
# The database is external: set LAWSCREEN_DATABASE_URL (and PREFECT_API_URL) when starting a container.

FROM python:3.11-slim AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PREFECT_SERVER_ANALYTICS_ENABLED=false \
    LAWSCREEN_DATA_DIR=/data
WORKDIR /app
# Dependencies first, so a code change does not reinstall them.
COPY pyproject.toml README.md ./
COPY lawscreen/__init__.py lawscreen/__init__.py
COPY migrations/__init__.py migrations/__init__.py
COPY flows/__init__.py flows/__init__.py
VOLUME /data

FROM base AS cpu
RUN pip install -e .
COPY . .
CMD ["prefect", "worker", "start", "--pool", "cpu", "--type", "process"]

FROM base AS train
# torch==2.13.0 from PyPI is the CUDA build on Linux: the host needs the NVIDIA driver and
# `docker run --gpus all`; without a GPU it still trains, on the CPU.
RUN pip install -e '.[train]'
COPY . .
CMD ["prefect", "worker", "start", "--pool", "gpu", "--type", "process"]
