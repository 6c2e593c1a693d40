"""domain-llm pipeline stages: one package per DVC stage plus small shared modules (io, config, errors)."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
CONF_DIR = REPO_ROOT / "conf"
