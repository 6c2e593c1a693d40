"""Which adapter and merged model the stages after `train` use: align@<domain>'s when it tuned one, else
train's. align always writes models/aligned/<domain>/alignment.json, so those stages depend on that folder
(dvc.yaml) and rerun when alignment is switched on or off.

    adapter_dir, merged_dir, method = trained_model(cfg)     # cfg made for one domain (stages.config.for_domain)
"""

from __future__ import annotations

import json
from pathlib import Path

from omegaconf import DictConfig

from stages.errors import StageError

ALIGNMENT_FILE = "alignment.json"


def trained_model(cfg: DictConfig) -> tuple[Path, Path, str]:
    """(adapter folder, merged folder, "none" | the alignment method). No alignment.json (align never ran, e.g. a
    standalone `domain-llm evaluate`): train's."""
    sft = (Path(str(cfg.paths.adapter)), Path(str(cfg.paths.merged)), "none")
    aligned = cfg.paths.get("aligned")
    if aligned is None:
        return sft
    marker = Path(str(aligned)) / ALIGNMENT_FILE
    if not marker.is_file():
        return sft
    try:
        record = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise StageError(f"{marker}: unreadable ({err}); rerun `dvc repro align@{cfg.domain.name}`") from None
    method = str(record.get("method", "none"))
    if method == "none":
        return sft
    folder = marker.parent
    adapter, merged = folder / str(record.get("adapter", "adapter")), folder / str(record.get("merged", "merged"))
    for path in (adapter, merged):
        if not path.is_dir():
            raise StageError(f"{path}: missing though {marker} says {method}; rerun `dvc repro align@{cfg.domain.name}`")
    return adapter, merged, method
