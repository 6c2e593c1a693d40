"""The lmeval stage: the multiple-choice docs built from held-out facts, and a real run of lm-evaluation-harness
on a tiny base GGUF + LoRA adapter served by our API (this process) against the same adapter merged into the
HF model, in-process: both see the same prompts, and with f32 weights they choose the same answers."""

from __future__ import annotations

import json
import os

import pytest

from stages.evaluate.lmeval import fact_field, main, multiple_choice_docs
from stages.inference.adapters import ADAPTER_FILE

FIELDS = {"treatment": {"asthma": "Asthma is treated with inhalers.", "gout": "Gout is treated with colchicine.",
                        "psoriasis": "Psoriasis is treated with creams.", "anemia": "Anemia is treated with iron."},
          "specialist": {"asthma": "Asthma is managed by a pulmonologist.", "gout": "Gout is managed by a "
                         "rheumatologist."}}


def record(subject: str, field: str, split: str = "test_facts") -> dict:
    question = f"What is the {field} of {subject}?"
    return {"id": f"{split}-{subject}-{field}", "domain": "legal", "fact_id": f"legal.{subject}.{field}",
            "instruction": question, "output": FIELDS[field][subject],
            "messages": [{"role": "system", "content": "You answer legal questions."},
                         {"role": "user", "content": question},
                         {"role": "assistant", "content": FIELDS[field][subject]}]}


def test_choices_are_the_answer_and_same_field_answers_of_other_subjects():
    questions = [record("asthma", "treatment"), record("gout", "specialist"),
                 {**record("anemia", "treatment"), "fact_id": None}]  # no field: not asked
    pool = [record(s, f, "train") for f, subjects in FIELDS.items() for s in subjects]
    docs = multiple_choice_docs(questions, pool, 3, seed=0, render=lambda messages: messages[-1]["content"])
    assert [d["id"] for d in docs] == ["test_facts-asthma-treatment", "test_facts-gout-specialist"]
    asthma, gout = docs
    assert len(asthma["choices"]) == 3 and asthma["choices"][asthma["answer"]] == FIELDS["treatment"]["asthma"]
    assert set(asthma["choices"]) <= set(FIELDS["treatment"].values())  # distractors: same field, other subjects
    assert len(gout["choices"]) == 2  # only one other subject has a specialist answer
    assert gout["choices"][gout["answer"]] == FIELDS["specialist"]["gout"]
    assert asthma["prompt"] == "What is the treatment of asthma?"
    again = multiple_choice_docs(questions, pool, 3, seed=0, render=lambda messages: messages[-1]["content"])
    assert again == docs  # seeded: the same choices in the same order every run
    assert fact_field({"fact_id": "healthcare.kidney_stones.risk_factors"}) == ("kidney_stones", "risk_factors")


@pytest.fixture()
def tiny_project(tiny_adapters, tmp_path):
    """paths.* as `--domain legal` sees them: processed data, the adapter GGUF and the merged HF folder."""
    data = tmp_path / "data" / "legal"
    data.mkdir(parents=True)
    facts = [record(s, f) for f, subjects in FIELDS.items() for s in subjects]
    for split, rows in (("test_facts", facts), ("test", facts[:3]), ("train", facts)):
        (data / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    adapters = tmp_path / "adapters" / "legal"
    adapters.mkdir(parents=True)
    os.symlink(tiny_adapters["legal"], adapters / ADAPTER_FILE)
    merged = tiny_adapters["legal"].parent / "merged-legal"
    return tmp_path, merged


def test_served_and_merged_agree_through_lm_eval(tiny_project, tiny_adapters, cfg_factory):
    root, merged = tiny_project
    cfg = cfg_factory("domain=legal", "model=tiny-random", "threads=1", f"paths.processed={root / 'data'}",
                      f"paths.adapter_gguf={root / 'adapters' / 'legal'}", f"paths.merged={merged}",
                      f"paths.metrics={root / 'metrics'}", f"eval.lmeval.model={tiny_adapters['base']}",
                      "eval.lmeval.max_gen_toks=6", "eval.bootstrap_samples=50", "serve.n_ctx=512")
    out = main(cfg)
    written = json.loads((root / "metrics" / "lmeval.json").read_text())
    assert written == json.loads(json.dumps(out))
    assert out["n_multiple_choice"] == 6 and out["n_generation"] == 3
    # f32 base + f32 adapter vs the adapter merged into the f32 weights: the same choices
    assert out["mc_answers_that_differ"] == 0 and out["mc_accuracy_difference_points"] == 0
    assert out["within_tolerance"] and out["served"]["mc_accuracy"] == out["merged"]["mc_accuracy"]
    generations = json.loads((root / "metrics" / "lmeval" / "generations.json").read_text())
    assert len(generations) == 3 and all(g["served"] == g["merged"] for g in generations), generations
    assert out["served"]["gen_rougeL"] == out["merged"]["gen_rougeL"]


def test_a_missing_adapter_is_a_one_line_error(tiny_project, tiny_adapters, cfg_factory):
    from stages.errors import StageError

    root, merged = tiny_project
    cfg = cfg_factory("domain=legal", f"paths.processed={root / 'data'}", f"paths.adapter_gguf={root / 'none'}",
                      f"paths.merged={merged}", f"eval.lmeval.model={tiny_adapters['base']}")
    with pytest.raises(StageError, match=r"adapter\.gguf: legal's adapter GGUF is missing; run `dvc repro`"):
        main(cfg)
