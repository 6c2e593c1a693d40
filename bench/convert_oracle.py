"""Our in-process converter vs llama.cpp's own `convert_hf_to_gguf.py` / `convert_lora_to_gguf.py` (the oracle,
run as a subprocess from the llama.cpp sources our runtime was built from; never imported, never copied), on a
tiny random model of every family (tests/stages/quantize/family_models.py) and a LoRA adapter on it. Compares
the two files' metadata (keys and values), tensor names, shapes, types and values, and writes a table of
family x (metadata, tensors) to bench/results/convert_oracle.{json,md}.

    python bench/convert_oracle.py                     # every family
    python bench/convert_oracle.py --families qwen2,gemma3

The llama.cpp sources are the sdist of the installed llama-cpp-python, downloaded once into the peer cache
(bench/llama_server_peer.py; no build needed here). Differences we know of and accept are listed in EXPLAINED
with the reason; anything else is reported as a difference.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from bench.llama_server_peer import DEFAULT_CACHE, fetch_sources  # noqa: E402
from bench.run_info import finish_record, run_record  # noqa: E402
from stages.fileio import write_json  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "convert_oracle.json"
# Metadata keys whose difference is expected, with why. Anything not here must be equal.
EXPLAINED = {
    "general.name": "naming only: ours is the folder name, llama.cpp's is derived from it",
    "general.basename": "naming only (llama.cpp derives it from the folder)",
    "general.size_label": "naming only (llama.cpp's parameter-count label)",
    "general.finetune": "naming only",
    "general.base_model.count": "provenance naming (llama.cpp names the adapter's base model from its path)",
    "general.base_model.0.name": "provenance naming",
    "general.base_model.0.repo_url": "provenance naming (a hub URL made from a local path)",
    "general.tags": "provenance naming",
    "tokenizer.ggml.add_eos_token": "ours writes false where llama.cpp leaves it out (same default at run time)",
    "tokenizer.ggml.add_bos_token": "ours writes the tokenizer's rule explicitly; llama.cpp omits it when its "
                                    "post-processor has no template (same behaviour at run time)",
    "tokenizer.ggml.padding_token_id": "ours keeps pad only when the tokenizer names one",
    "tokenizer.ggml.add_space_prefix": "SentencePiece from tokenizer.json: ours writes the tokenizer's rule, "
                                       "llama.cpp leaves it to the same run-time default",
    "tokenizer.ggml.scores": "SentencePiece from tokenizer.json: llama.cpp's LlamaHfVocab writes a placeholder "
                             "-1000 for every token (its own comment says so); ours derives scores from the merge "
                             "ranks, which is what makes llama.cpp merge in HF's order (tokenizer parity tests)",
    "tokenizer.ggml.token_type": "SentencePiece from tokenizer.json: ours marks <unk> UNKNOWN as sentencepiece "
                                 "itself does, llama.cpp's LlamaHfVocab marks it CONTROL",
    "rope.freq_base": "gemma2: ours writes config rope_theta (10000), llama.cpp leaves it to the same default",
    "rope.dimension_count": "llama.cpp writes it for llama/phi3 only; ours for the same (others: the default)",
    "vocab_size": "llama.cpp writes it for llama only, like ours",
    "attention.sliding_window_pattern": "gemma3: ours writes config.json layer_types exactly; llama.cpp assumes "
                                        "5 local : 1 global when it is absent",
    "attention.key_length": "ours writes head_dim when config.json has it",
    "attention.value_length": "ours writes head_dim when config.json has it",
}


def explained(key: str) -> str | None:
    for suffix, why in EXPLAINED.items():
        if key == suffix or key.endswith("." + suffix):
            return why
    return None


def read(path: Path) -> tuple[dict, dict]:
    """(metadata, tensors) of a GGUF: key -> value, name -> (shape, type name, float32 values)."""
    import gguf

    reader = gguf.GGUFReader(path)
    meta = {}
    for name, field in reader.fields.items():
        if name.startswith("GGUF."):
            continue
        value = field.contents()
        meta[name] = value
    tensors = {}
    for t in reader.tensors:
        data = gguf.quants.dequantize(t.data, t.tensor_type)
        tensors[t.name] = (tuple(int(d) for d in t.shape), t.tensor_type.name, np.asarray(data, dtype=np.float32))
    return meta, tensors


def same_value(a, b) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, int | float) and isinstance(b, int | float) and abs(a - b) <= 1e-6 * max(1, abs(a))
    return a == b


def compare(ours: Path, theirs: Path, vocab_skipped: str | None = None) -> dict:
    our_meta, our_tensors = read(ours)
    their_meta, their_tensors = read(theirs)
    meta_diffs, accepted = [], []
    if vocab_skipped:  # llama.cpp wrote no vocabulary: compare everything else
        our_meta = {k: v for k, v in our_meta.items() if not k.startswith("tokenizer.")}
        accepted.append(f"tokenizer.*: not compared, llama.cpp's converter could not read this tokenizer "
                        f"({vocab_skipped}); tokenizer parity with transformers is tested instead")
    for key in sorted(set(our_meta) | set(their_meta)):
        a, b = our_meta.get(key, "<absent>"), their_meta.get(key, "<absent>")
        if same_value(a, b):
            continue
        short = lambda v: (str(v)[:80] + "...") if len(str(v)) > 80 else str(v)  # noqa: E731
        line = f"{key}: ours {short(a)} vs llama.cpp {short(b)}"
        if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
            at = [i for i, (x, y) in enumerate(zip(a, b, strict=True)) if not same_value(x, y)]
            line += f" [{len(at)} of {len(a)} entries differ, first at {at[0]}]"
        why = explained(key)
        (accepted if why else meta_diffs).append(line + (f" ({why})" if why else ""))
    tensor_diffs = []
    for name in sorted(set(our_tensors) | set(their_tensors)):
        if name not in our_tensors or name not in their_tensors:
            tensor_diffs.append(f"{name}: only in {'ours' if name in our_tensors else 'llama.cpp'}")
            continue
        (s1, t1, v1), (s2, t2, v2) = our_tensors[name], their_tensors[name]
        if s1 != s2 or t1 != t2:
            tensor_diffs.append(f"{name}: ours {s1} {t1} vs llama.cpp {s2} {t2}")
        elif not np.array_equal(v1, v2):
            worst = float(np.abs(v1 - v2).max())
            if worst <= 1e-6 * max(1.0, float(np.abs(v2).max())):  # computed tensors (rope factors): f32 rounding
                accepted.append(f"{name}: values differ by at most {worst:.2g} (float32 rounding of a computed tensor)")
            else:
                tensor_diffs.append(f"{name}: values differ, max |d| {worst:.3g}")
    return {"metadata_equal": not meta_diffs, "tensors_equal": not tensor_diffs, "metadata_differences": meta_diffs,
            "accepted_differences": accepted, "tensor_differences": tensor_diffs,
            "tensors": len(our_tensors), "metadata_keys": len(our_meta)}


# Runs the oracle script unchanged, except that a vocabulary it cannot read (llama.cpp's SentencePiece families
# need tokenizer.model, which our tiny models do not ship; a byte-level BPE whose pre-tokenizer hash it does not
# know) is skipped and reported instead of ending the run, so hyper-parameters and tensors are still compared.
VOCAB_GUARD = """
import runpy, sys
script, src = sys.argv[1], sys.argv[2]
sys.path.insert(0, src)
sys.path.insert(1, src + "/gguf-py")
import conversion
original = conversion.get_model_class
def guarded(name, mmproj=False):
    cls = original(name, mmproj=mmproj)
    set_vocab = cls.set_vocab
    def set_vocab_or_skip(self):
        try:
            set_vocab(self)
        except (NotImplementedError, OSError, ValueError) as e:
            print(f"ORACLE-VOCAB-SKIPPED: {type(e).__name__}: {e}", file=sys.stderr)
    cls.set_vocab = set_vocab_or_skip
    return cls
conversion.get_model_class = guarded
sys.argv = [script] + sys.argv[3:]
runpy.run_path(script, run_name="__main__")
"""


def oracle(script: Path, args: list[str]) -> str | None:
    """Run llama.cpp's `script` with `args`; returns why its vocabulary was skipped, or None."""
    env = {**os.environ, "NO_LOCAL_GGUF": ""}
    proc = subprocess.run([sys.executable, "-c", VOCAB_GUARD, str(script), str(script.parent), *args],
                          capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines() or ["no output"]
        raise RuntimeError(f"{script.name} failed: {lines[-1][:300]}")
    skipped = [line for line in proc.stderr.splitlines() if line.startswith("ORACLE-VOCAB-SKIPPED: ")]
    return skipped[0].removeprefix("ORACLE-VOCAB-SKIPPED: ")[:200] if skipped else None


def one_family(family: str, src: Path, work: Path) -> dict:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from stages.quantize.convert import convert_hf_to_gguf
    from stages.quantize.families import family_for
    from stages.quantize.lora import convert_lora_to_gguf
    from tests.stages.quantize.family_models import build

    model_dir = build(family, work / family / "model")
    ours = convert_hf_to_gguf(model_dir, work / family / "ours.gguf", outtype="f32")
    theirs = work / family / "llama.cpp.gguf"
    skipped = oracle(src / "convert_hf_to_gguf.py", [str(model_dir), "--outfile", str(theirs), "--outtype", "f32"])
    row = {"family": family, "model": compare(ours, theirs, skipped)}
    if not skipped:  # both wrote a vocabulary: does each tokenize like transformers?
        from stages.quantize.verify import PROBE_TEXTS, check_tokenizer_parity
        from tests.stages.quantize.test_convert import probe_strings

        texts = probe_strings()
        row["tokenizer_mismatches"] = {name: len(check_tokenizer_parity(model_dir, path, texts, limit=1000))
                                       for name, path in (("ours", ours), ("llama.cpp", theirs))}
        row["tokenizer_strings"] = min(1000, len(PROBE_TEXTS) + 1 + len(texts))  # + one rendered chat

    targets = family_for(json.loads((model_dir / "config.json").read_text()), model_dir).lora_targets
    torch.manual_seed(1)
    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    peft_model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=list(targets),
                                                 init_lora_weights=False))
    adapter_dir = work / family / "adapter"
    peft_model.save_pretrained(adapter_dir)
    ours_lora = convert_lora_to_gguf(adapter_dir, model_dir, work / family / "ours-lora.gguf", outtype="f32")
    theirs_lora = work / family / "llama.cpp-lora.gguf"
    oracle(src / "convert_lora_to_gguf.py", [str(adapter_dir), "--base", str(model_dir), "--outfile",
                                              str(theirs_lora), "--outtype", "f32"])
    row["lora"] = compare(ours_lora, theirs_lora)
    return row


def markdown(result: dict) -> str:
    yes = lambda ok: "equal" if ok else "differs"  # noqa: E731
    lines = ["# Converter vs llama.cpp's own converters", "", "```", result["command"], "```", "",
             f"llama.cpp sources: {result['llama_cpp_sources']}", "",
             "| family | model metadata | model tensors | LoRA metadata | LoRA tensors | strings tokenized unlike "
             "transformers (ours / llama.cpp's) |", "|---|---|---|---|---|---|"]
    for row in result["families"]:
        if "error" in row:
            lines.append(f"| {row['family']} | error: {row['error'][:120]} | | | |")
            continue
        m, lo = row["model"], row["lora"]
        mismatches = row.get("tokenizer_mismatches")
        parity = (f"{mismatches['ours']} / {mismatches['llama.cpp']} of {row['tokenizer_strings']}" if mismatches
                  else "llama.cpp wrote no vocabulary")
        lines.append(f"| {row['family']} | {yes(m['metadata_equal'])} | {yes(m['tensors_equal'])} ({m['tensors']}) "
                     f"| {yes(lo['metadata_equal'])} | {yes(lo['tensors_equal'])} ({lo['tensors']}) | {parity} |")
    lines += ["", "Differences (accepted ones say why):", ""]
    for row in result["families"]:
        for part in ("model", "lora"):
            info = row.get(part) or {}
            for line in info.get("metadata_differences", []) + info.get("tensor_differences", []):
                lines.append(f"- {row['family']} {part}: **{line}**")
            for line in info.get("accepted_differences", []):
                lines.append(f"- {row['family']} {part}: {line}")
    return "\n".join(lines) + "\n"


def main() -> None:
    from tests.stages.quantize.family_models import FAMILIES

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", default=",".join(FAMILIES), help="comma list")
    parser.add_argument("--peer-cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    record = run_record()
    src = fetch_sources(args.peer_cache.expanduser())
    rows = []
    with tempfile.TemporaryDirectory(prefix="convert-oracle.") as tmp:
        for family in args.families.split(","):
            try:
                rows.append(one_family(family, src, Path(tmp)))
            except Exception as e:  # one family's failure is a row of the table, not the end of the run
                rows.append({"family": family, "error": f"{type(e).__name__}: {e}"})
            row = rows[-1]
            print(family, "error" if "error" in row else
                  {part: (row[part]["metadata_equal"], row[part]["tensors_equal"]) for part in ("model", "lora")},
                  row.get("tokenizer_mismatches", ""), flush=True)
    result = {"name": "convert_oracle", **finish_record(record), "llama_cpp_sources": str(src), "families": rows}
    write_json(args.output, result)
    args.output.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
