"""A real index built by the index stage over a folder of small documents."""

from __future__ import annotations

import json

import pytest

VOLCANO = ("# Volcanoes\n\nMount Zorblax erupted in 1887 and buried the valley of Quenth under ash.\n\n"
           "Its crater lake is acidic and coloured turquoise by dissolved copper.")
BAKING = "Sourdough bread rises because wild yeast and lactic acid bacteria ferment the flour."


@pytest.fixture(scope="session")
def built_index(tmp_path_factory):
    """The stage entry point on a folder of two documents: models/index + metrics/index.json."""
    from stages.config import compose
    from stages.index.main import main

    root = tmp_path_factory.mktemp("index")
    docs = root / "docs"
    docs.mkdir()
    (docs / "volcano.md").write_text(VOLCANO)
    (docs / "bread.txt").write_text(BAKING)
    # More documents: with two, BM25's idf of a word in one of them is log(1.5 / 1.5) = 0 and it ranks nothing.
    others = ["Tidal pools hold anemones, crabs and small fish between the tides.",
              "A violin has four strings tuned in fifths and is played with a bow.",
              "Glaciers carve U-shaped valleys as they move slowly downhill.",
              "Chess openings such as the Sicilian Defence shape the middlegame."]
    (docs / "others.jsonl").write_text("".join(json.dumps({"id": f"other{i}", "text": t}) + "\n"
                                               for i, t in enumerate(others)))
    main(compose([f"index.docs_dir={docs}", f"paths.index={root / 'index'}", f"paths.metrics={root / 'metrics'}"]))
    return root
