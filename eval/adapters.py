"""The evaluation adapter of a subject, found through its plug-in (eval/ names no subject)."""

from __future__ import annotations

from subjects import registry
from subjects.evaluation import EvaluationAdapter
from subjects.plugin import PluginError, load


def adapter(subject: str) -> EvaluationAdapter:
    plugin = registry.plugin(subject)
    if plugin.evaluation is None:
        evaluable = [p.name for p in registry.plugins() if p.evaluation]
        raise PluginError(f"the {subject} subject has no evaluation adapter yet; evaluable: "
                          f"{', '.join(evaluable) or 'none'}")
    return load(plugin.evaluation)  # type: ignore[no-any-return]


def evaluable() -> list[str]:
    return [p.name for p in registry.plugins() if p.evaluation]
