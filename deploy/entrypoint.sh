#!/bin/sh
# The server image's entry point (Dockerfile): fetch the models when asked, refuse an empty models volume in one
# line, then `domain-llm serve` with the container's arguments (serve.* overrides).
#   DOMAIN_LLM_DVC_PULL=1   `dvc pull` the pipeline's outputs from the project's DVC remote first (.dvc/config)
set -eu
cd /app
if [ "${DOMAIN_LLM_DVC_PULL:-0}" = "1" ]; then
    # The image holds dvc.lock and .dvc/config but no git history: DVC runs without an SCM here.
    dvc config --local core.no_scm true
    dvc pull --allow-missing || { echo "error: dvc pull failed (see above): check the remote in .dvc/config and its credentials" >&2; exit 2; }
fi
if [ -z "$(ls -A models 2>/dev/null)" ]; then
    echo "error: /app/models is empty: mount the pipeline's models (-v \"\$PWD/models:/app/models:ro\") or set DOMAIN_LLM_DVC_PULL=1 with a DVC remote" >&2
    exit 2
fi
exec domain-llm serve "$@"
