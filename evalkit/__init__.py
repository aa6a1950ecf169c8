"""evalkit: measure each step up the prompt -> few-shot -> RAG -> fine-tuned ladder.

The public API for a notebook or script, imported lazily (so `import evalkit` loads neither
scikit-learn nor pandas until a name that needs them is used):

    import evalkit
    ts = evalkit.load_testset("testsets/support-intents")
    result = evalkit.run_experiment(evalkit.RunConfig(testset=str(ts.path)))
    summary = evalkit.read_summary(result.run_dir)   # or any reports/<run-id>/ folder

Plug-ins: `register_metric(Metric(...))`, `register_task_type(TaskType(...))`,
`register_provider(name, loader)` (docs/summary-schema.md, "Adding a metric or a task type").
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
# The distribution's name on the package index: "evalkit" there is an unrelated 2021 project
# (evolutionary algorithms). The import name and the command stay `evalkit`.
DISTRIBUTION = "evalkit-ladder"

# public name -> the module that defines it
_EXPORTS = {
    "load_testset": "evalkit.data.testset", "Testset": "evalkit.data.testset",
    "Task": "evalkit.data.testset", "Item": "evalkit.data.testset",
    "TestsetError": "evalkit.data.testset",
    "RunConfig": "evalkit.pipeline.experiment", "RunResult": "evalkit.pipeline.experiment",
    "run_experiment": "evalkit.pipeline.experiment",
    "read_summary": "evalkit.run.runfolder",
    "summarize_run": "evalkit.analysis.summary", "compare": "evalkit.analysis.summary",
    "render_report": "evalkit.report.build",
    "Metric": "evalkit.tasks", "TaskType": "evalkit.tasks", "register_metric": "evalkit.tasks",
    "register_task_type": "evalkit.tasks", "metric_names": "evalkit.tasks",
    "Provider": "evalkit.providers", "register_provider": "evalkit.providers",
    "get_provider": "evalkit.providers",
}
__all__ = ["Item", "Metric", "Provider", "RunConfig", "RunResult", "Task", "TaskType",
           "Testset", "TestsetError", "__version__", "compare", "get_provider", "load_testset",
           "metric_names", "read_summary", "register_metric", "register_provider",
           "register_task_type", "render_report", "run_experiment", "summarize_run"]

if TYPE_CHECKING:  # for type checkers and IDEs; at run time __getattr__ imports on first use
    from evalkit.analysis.summary import compare, summarize_run
    from evalkit.data.testset import Item, Task, Testset, TestsetError, load_testset
    from evalkit.pipeline.experiment import RunConfig, RunResult, run_experiment
    from evalkit.providers import Provider, get_provider, register_provider
    from evalkit.report.build import render_report
    from evalkit.run.runfolder import read_summary
    from evalkit.tasks import Metric, TaskType, metric_names, register_metric, register_task_type


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'evalkit' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
