"""Which system prompt a request gets when it brings none."""

from __future__ import annotations

from serving.service import ServingContext


def default_system_prompt(ctx: ServingContext, adapter: str | None = None) -> str | None:
    """serve.system_prompt when set (an explicit override; "" = none), else the one the served model was
    trained with (its manifest, read by the engine at load; for a domain's adapter, the adapter file's own), so
    a model trained for `legal` is not served with another domain's prompt because of the current config."""
    if ctx.settings.system_prompt is not None:
        return ctx.settings.system_prompt or None
    if adapter is not None:
        return ctx.domains[adapter].system_prompt
    served = getattr(ctx.generation.worker.engine, "served", None) or {}
    return served.get("system_prompt")
