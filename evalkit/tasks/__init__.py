"""Task types and metrics: the registries (`base`) and the built-in plug-ins.

Importing this package registers the built-ins; a new built-in task type or metric is one
module here plus one line below. A task type's module also says what the rest of the flow
asks of it: its output-token default (the openai provider), and how `evalkit init` infers and
reads it (`Scaffold`), so no later module names a type. A user's own registers itself from
wherever it lives:

    from evalkit.tasks import Metric, register_metric
    register_metric(Metric("brevity", "item", lambda ctx: ..., task_types=("qa",)))
"""

# importing the built-ins registers them
from evalkit.tasks import classification, common, extraction, generation, judged, qa  # noqa: F401
from evalkit.tasks.base import (
    DESIGNED_TASK_TYPES,
    METRICS,
    TASK_TYPES,
    ItemContext,
    Metric,
    RunContext,
    Scaffold,
    TaskType,
    bounds,
    higher_is_better,
    metric,
    metric_names,
    metrics_in,
    output_token_defaults,
    quality_metrics,
    register_metric,
    register_task_type,
    run_metrics,
    scaffolded_types,
    task_type,
)

__all__ = ["DESIGNED_TASK_TYPES", "METRICS", "TASK_TYPES", "ItemContext", "Metric",
           "RunContext", "Scaffold", "TaskType", "bounds", "higher_is_better", "metric",
           "metric_names", "metrics_in", "output_token_defaults", "quality_metrics",
           "register_metric", "register_task_type", "run_metrics", "scaffolded_types",
           "task_type"]
