"""Grounded answers end to end on real components: grounded training examples built over a real index, and the
grounded stage running the real SmolLM2 GGUF closed-book and with retrieved passages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stages.errors import StageError
from stages.inference.grounding import GROUNDING, check_citations, strip_citations
from stages.inference.retrieval import Retriever
from stages.prepare.grounded import cite, ground_training_examples
from stages.prepare.records import make_record
from tests.stages.index.conftest import BAKING

ZORBLAX = "Mount Zorblax erupted in 1887 and buried the valley of Quenth under ash."


def test_cite_and_strip_are_inverse():
    assert cite("Gout is treated with NSAIDs.", 2) == "Gout is treated with NSAIDs [2]."
    assert cite("No full stop", 1) == "No full stop [1]"
    for answer in ("Gout is treated with NSAIDs.", "No full stop"):
        assert strip_citations(cite(answer, 3)) == answer
    assert check_citations(cite("Ash.", 2), available=1) == ("Ash.", [], [2])


def test_training_examples_cite_the_passage_holding_the_answer(built_index):
    retriever = Retriever.load(built_index / "index")
    records = [make_record("geo", "When did Mount Zorblax erupt?", ZORBLAX, "synthetic", system_prompt="Be brief."),
               make_record("food", "Why does sourdough rise?", BAKING, "synthetic", system_prompt="Be brief."),
               # its answer is in no passage: never grounded
               make_record("lit", "Who wrote Hamlet?", "Shakespeare wrote Hamlet.", "synthetic")]
    out, count = ground_training_examples(records, retriever, share=1.0, top_k=2, seed=0)
    assert count == 2 and out[2] == records[2] and "grounded" not in out[2]
    for original, grounded in zip(records[:2], out[:2], strict=True):
        assert grounded["id"] == original["id"] and grounded["output"] == original["output"]
        system, user, assistant = grounded["messages"]
        assert system["content"] == f"Be brief.\n\n{GROUNDING}"
        assert user["content"].startswith("Context:\n[1] ") and user["content"].endswith(
            f"Question: {original['instruction']}")
        answer, cited, invalid = check_citations(assistant["content"], available=2)
        assert invalid == [] and len(cited) == 1 and strip_citations(answer) == original["output"]
        # the cited passage is one the model was shown, and it holds the answer
        chunks = {c.chunk_id: c for c in retriever.chunks}
        assert original["output"] in chunks[grounded["passages"][cited[0] - 1]].text
    # share: round(3 * 0.34) = 1 record, seeded
    assert ground_training_examples(records, retriever, share=0.34, top_k=2, seed=0)[1] == 1


@pytest.fixture(scope="module")
def grounded_run(built_index, smollm2_gguf, tmp_path_factory):
    from stages.config import compose
    from stages.evaluate.grounded import main
    from stages.fileio import write_jsonl

    root = tmp_path_factory.mktemp("grounded")
    questions = [make_record("geo", "In which year did Mount Zorblax erupt?", ZORBLAX, "synthetic"),
                 make_record("food", "Why does sourdough bread rise?", BAKING, "synthetic")]
    write_jsonl(root / "processed" / "healthcare" / "test_facts.jsonl", questions)
    metrics = main(compose([f"paths.processed={root / 'processed'}", f"paths.index={built_index / 'index'}",
                            f"paths.metrics={root / 'metrics'}", f"eval.grounded.model={smollm2_gguf}",
                            f"paths.adapter_gguf={root / 'adapters'}",  # none: the GGUF alone, here and in CI
                            "eval.grounded.top_k=2", "eval.max_new_tokens=40", "eval.batch_size=4",
                            "eval.bootstrap_samples=50", "threads=2", "domain.system_prompt=null"]))
    return root, metrics


def test_stage_measures_closed_book_against_retrieval(grounded_run):
    root, metrics = grounded_run
    assert json.loads((root / "metrics" / "grounded.json").read_text()) == metrics
    assert metrics["split"] == "test_facts" and metrics["questions"] == 2 and metrics["top_k"] == 2
    for condition in ("closed_book", "retrieval"):
        assert 0 <= metrics[condition]["rougeL"] <= 1 and metrics[condition]["n_examples"] == 2
    assert metrics["retrieval"]["answer_in_context"] == 1.0  # both answers are in a retrieved passage
    rows = [json.loads(line) for line in (root / "metrics" / "grounded" / "predictions.jsonl").read_text().splitlines()]
    assert [r["question"] for r in rows] == ["In which year did Mount Zorblax erupt?", "Why does sourdough bread rise?"]
    # the year is only in the document: the model that read it says it, the model alone cannot know it
    zorblax = rows[0]
    assert "1887" in zorblax["retrieval"], zorblax
    assert "1887" not in zorblax["closed_book"], zorblax
    # The summary is the mean of the per-answer scores written beside it. (Which condition scores higher on two
    # answers of the untuned base is not a property of the stage: with the served repeat_penalty its right
    # answer above adds "which is a year that is not mentioned" and scores 0.28 against the wrong one's 0.44.)
    for condition in ("closed_book", "retrieval"):
        mean = sum(r[f"{condition}_scores"]["rougeL"] for r in rows) / len(rows)
        assert metrics[condition]["rougeL"] == pytest.approx(mean), (condition, metrics)
    assert all(set(r["cited"]) <= {1, 2} for r in rows)


def test_stage_errors_are_one_line(tmp_path, built_index):
    from stages.config import compose
    from stages.evaluate.grounded import main

    with pytest.raises(StageError, match="no test_facts.jsonl or test.jsonl") as err:
        main(compose([f"paths.processed={tmp_path}", f"paths.index={built_index / 'index'}"]))
    assert "\n" not in str(err.value)
    with pytest.raises(StageError, match=r"eval.grounded.top_k=0: use 1..16"):
        main(compose([f"paths.processed={tmp_path}", "eval.grounded.top_k=0"]))
    # a named split does not fall back to the test split
    (tmp_path / "healthcare").mkdir()
    (tmp_path / "healthcare" / "test.jsonl").write_text('{"instruction": "Q?", "output": "A."}\n')
    with pytest.raises(StageError, match=r"eval.grounded.split=validation_facts: .*validation_held_out_facts > 0"):
        main(compose([f"paths.processed={tmp_path}", "eval.grounded.split=validation_facts"]))


def test_settings_sweep_reads_only_the_validation_facts(grounded_run, built_index, smollm2_gguf):
    """bench/grounded_sweep.py runs the stage on validation_facts per setting and picks the best ROUGE-L."""
    import subprocess
    import sys

    from omegaconf import OmegaConf

    from stages.config import compose
    from stages.fileio import write_jsonl

    root, _ = grounded_run
    sweep = root / "sweep"
    question = make_record("geo", "When did Mount Zorblax erupt?", ZORBLAX, "synthetic")
    write_jsonl(sweep / "processed" / "healthcare" / "validation_facts.jsonl", [question])
    cfg = compose([f"paths.processed={sweep / 'processed'}", f"paths.index={built_index / 'index'}",
                   f"paths.adapter_gguf={sweep / 'adapters'}", f"eval.grounded.model={smollm2_gguf}",
                   "eval.max_new_tokens=24", "eval.batch_size=2",
                   "eval.bootstrap_samples=20", "threads=2", "domain.system_prompt=null"])
    OmegaConf.save(cfg, sweep / "params.yaml", resolve=True)
    out = sweep / "result.json"
    script = Path(__file__).resolve().parents[3] / "bench" / "grounded_sweep.py"
    argv = [sys.executable, str(script), "--params", str(sweep / "params.yaml"), "--top-k", "1,2", "--rerank", "false",
            "--domains", "healthcare", "--output", str(out)]
    # no adapter published for the domain: the sweep refuses to measure the bare base as if it were the domain
    refused = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    assert refused.returncode != 0 and "no adapter for domain 'healthcare'" in refused.stderr, refused.stderr[-2000:]
    assert not out.exists()
    done = subprocess.run([*argv, "--without-adapter"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["split"] == "validation_facts" and [r["top_k"] for r in result["rows"]] == [1, 2]
    assert all(r["questions"] == 1 for r in result["rows"])
    assert result["best"] == {"healthcare": max(result["rows"], key=lambda r: r["rougeL_with_retrieval"])}
    assert all(r["domain"] == "healthcare" and r["adapter"] is None for r in result["rows"])
    assert "| healthcare (no adapter) | 1 | False |" in out.with_suffix(".md").read_text()
