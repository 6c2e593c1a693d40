"""`domain-llm`: one subcommand per pipeline stage, plus the server and helpers.

    domain-llm params [OVERRIDES...]              # compose conf/ into params.yaml (what `dvc exp run` does)
    domain-llm prepare domain=legal data.num_samples=200
    domain-llm train --params params.yaml         # how dvc.yaml runs a stage
    domain-llm serve serve.port=8000
    domain-llm prepare --list-datasets
    domain-llm export vllm --models-dir /models   # the domains on another engine (serving/export.py)

A stage run with Hydra overrides composes conf/ itself; with `--params FILE` it reads the composed
file (DVC's way). Heavy libraries are imported only by the subcommand that needs them, so `--help` is fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from stages.errors import StageError

# Stages that run once per domain (dvc.yaml foreach over `domains`), each with `--domain NAME`.
PER_DOMAIN = {"prepare", "train", "align", "evaluate", "adapter", "retrieval", "grounded", "lmeval", "headline"}
# subcommand -> (module with `main(cfg)`, help)
STAGES = {
    "prepare": ("stages.prepare.main", "build data/processed/<domain>/{train,validation,test,test_facts,validation_facts}.jsonl"),
    "base": ("stages.base.main", "materialise the base model into models/base"),
    "train": ("stages.train.main", "LoRA/QLoRA fine-tune, merge into models/merged"),
    "align": ("stages.align.main", "preference tuning (DPO/ORPO/KTO/GRPO) of the SFT adapter -> models/aligned"),
    "evaluate": ("stages.evaluate.main", "metrics of fine-tuned vs base on the test split"),
    "quantize": ("stages.quantize.main", "base HF model -> GGUF, quantize, benchmark"),
    "adapter": ("stages.quantize.adapter", "one domain's LoRA adapter -> GGUF, measured on the quantized base"),
    "reranker": ("stages.reranker.main", "train and evaluate the domain cross-encoder"),
    "index": ("stages.index.main", "chunk and embed documents into models/index (BM25 + MiniLM)"),
    "retrieval": ("stages.index.evaluate", "recall@k and MRR of each retriever on the test questions"),
    "grounded": ("stages.evaluate.grounded", "served GGUF on unseen facts, alone vs with retrieved passages"),
    "lmeval": ("stages.evaluate.lmeval", "lm-evaluation-harness on the served GGUF + adapter (our API) vs the merged model"),
    "routing": ("stages.routing", "metrics/routing.json: how often `model: auto` picks each question's own domain"),
    "headline": ("stages.headline", "metrics/<domain>/headline.json: the few metrics `dvc exp show` displays"),
    "serve": ("serving.main", "serve the model behind the REST / OpenAI-compatible API"),
    "ui": ("serving.ui.main", "the experiments dashboard alone (no model), at /ui"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="domain-llm", description=__doc__.splitlines()[0])
    parser.add_argument("--log-level", default="INFO")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("params", help="compose conf/ (+ overrides) into params.yaml")
    p.add_argument("--output", default="params.yaml")
    p.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. domain=legal")

    for name, (_, help_text) in STAGES.items():
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--params", default=None, help="read this composed params file instead of conf/")
        p.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. data.num_samples=200")
        if name in PER_DOMAIN:
            p.add_argument("--domain", default=None,
                           help="run for this domain (conf/domain/NAME.yaml); default: the composed `domain`")
        if name == "prepare":
            p.add_argument("--list-datasets", action="store_true",
                           help="print recommended Hugging Face datasets per domain and exit")

    p = sub.add_parser("generate", help="print a generation from an HF model folder or a GGUF file")
    p.add_argument("prompt")
    p.add_argument("--model", default="models/merged/healthcare")
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--system", default=None, help="system prompt (default: the domain's, from params.yaml)")

    p = sub.add_parser("report", help="markdown of `dvc metrics diff` + `dvc params diff` against a git ref")
    p.add_argument("--rev", default="HEAD")

    p = sub.add_parser("export", help="the command lines serving the domains on llama-server or vLLM, our API in front")
    p.add_argument("engine", choices=("llama-server", "vllm"))
    p.add_argument("--models-dir", default=None, help="where the models folder is mounted on the engine's machine")
    p.add_argument("--port", type=int, default=8080, help="the engine's port")
    p.add_argument("--parallel", type=int, default=8, help="llama-server: -np (sequences decoded together)")
    p.add_argument("--json", action="store_true", help="argv, lora modules and our serve overrides as JSON")
    p.add_argument("--params", default=None, help="read this composed params file instead of conf/")
    p.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. paths.adapter_gguf=...")

    p = sub.add_parser("plots", help="`dvc plots show` (or `plots diff REV`) that renders offline")
    p.add_argument("dvc_args", nargs=argparse.REMAINDER, help="passed to `dvc plots show`, or `diff REV...`")
    return parser


def run(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    from stages.fileio import setup_logging

    setup_logging(args.log_level)
    if args.command == "params":
        from stages.config import dump_params

        changed = dump_params(args.output, args.overrides)
        print(f"{args.output}: {'updated' if changed else 'unchanged'}")
        return 0
    if args.command == "prepare" and args.list_datasets:
        from stages.prepare.sources import print_recommended_datasets

        print_recommended_datasets()
        return 0
    if args.command == "generate":
        from stages.generate import main as generate_main

        return generate_main(args.prompt, args.model, args.max_new_tokens, args.system)
    if args.command == "plots":
        from stages.plots import main as plots_main

        return plots_main(args.dvc_args)
    if args.command == "report":
        from stages.report import main as report_main

        print(report_main(args.rev))
        return 0

    from omegaconf.errors import MissingMandatoryValue

    from stages.config import for_domain, project_root, stage_config

    cfg = stage_config(args.params, args.overrides)
    if args.command == "export":
        from serving.export import main as export_main

        return export_main(cfg, project_root(args.params), args.engine, args.models_dir, args.json, args.port,
                           args.parallel)
    if args.command in PER_DOMAIN:
        cfg = for_domain(cfg, args.domain)
    module = importlib.import_module(STAGES[args.command][0])
    try:
        if args.command in ("serve", "ui"):  # long-running: relative paths mean the project, not the cwd
            module.main(cfg, root=project_root(args.params))
        else:
            module.main(cfg)
    except MissingMandatoryValue as e:  # a `???` in conf/ the run needs but nobody set: name the key
        raise StageError(f"{e.full_key}: required but not set (??? in conf/); set {e.full_key}=<value>") from None
    return 0


def main(argv: list[str] | None = None) -> None:
    try:
        code = run(sys.argv[1:] if argv is None else argv)
    except StageError as e:
        logging.getLogger("domain-llm").debug("stage error", exc_info=True)
        print(f"error: {e}", file=sys.stderr)
        code = e.exit_code
    except OSError as e:
        # Disk full, permission denied, ...: the environment, not our code. One line, outputs already safe
        # (every stage writes through stages.fileio's temp-then-rename).
        where = f"{e.filename}: " if e.filename else ""
        print(f"error: {where}{e.strerror or e}; free space or fix permissions and rerun", file=sys.stderr)
        code = 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        code = 130
    sys.exit(code)


if __name__ == "__main__":
    main()
