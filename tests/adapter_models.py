"""A tiny base model with two random LoRA adapters ("legal", "healthcare"), each also merged into the base,
all converted to f32 GGUF: what the adapter tests of the engine and the server serve."""

from __future__ import annotations

import shutil
from pathlib import Path

DOMAIN_SEEDS = {"legal": 1, "healthcare": 2}
ROUTING_EXAMPLES = {
    "legal": ["Can my landlord keep the deposit?", "What makes a contract binding?", "How do I file a lawsuit?"],
    "healthcare": ["What are the symptoms of diabetes?", "How is high blood pressure treated?",
                   "What does a vaccine do?"],
}
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def build_adapted_models(base_dir: Path, out: Path) -> dict[str, Path]:
    """{"base": base.gguf, <domain>: adapter-<domain>.gguf, "merged-<domain>": merged-<domain>.gguf}"""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from stages.quantize.convert import convert_hf_to_gguf
    from stages.quantize.lora import convert_lora_to_gguf

    files = {"base": convert_hf_to_gguf(base_dir, out / "base.gguf", outtype="f32")}
    for domain, seed in DOMAIN_SEEDS.items():
        torch.manual_seed(seed)
        base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
        # init_lora_weights=False: B random too, so each adapter changes what the model says.
        peft_model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, init_lora_weights=False,
                                                     target_modules=TARGETS))
        peft_model.save_pretrained(out / f"peft-{domain}")
        facts = {"domain": domain, "system_prompt": f"You answer {domain} questions.",
                 "routing_examples": ROUTING_EXAMPLES[domain]}
        files[domain] = convert_lora_to_gguf(out / f"peft-{domain}", base_dir, out / f"adapter-{domain}.gguf",
                                             outtype="f32", facts=facts)
        merged_dir = out / f"merged-{domain}"
        peft_model.merge_and_unload().save_pretrained(merged_dir, safe_serialization=True)
        for name in base_dir.iterdir():
            if name.name.startswith(("tokenizer", "special_tokens", "chat_template")):
                shutil.copy2(name, merged_dir / name.name)
        files[f"merged-{domain}"] = convert_hf_to_gguf(merged_dir, out / f"merged-{domain}.gguf", outtype="f32")
    return files
