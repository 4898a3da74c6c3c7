"""The report's experiments: optimizers compared on one budget, a learning-rate sweep, initialisation schemes.

Run them with `python -m core.experiments optimizers|lr-sweep|init` (see its --help). The workbench can
launch the same training runs itself: `plan_optimizer_runs(...)` returns the `python -m core.train`
commands still to run, each an ordinary run folder under <checkpoints>/experiments/.
"""

from core.experiments.launch import PlannedRun, experiment_lock, summarize
from core.experiments.optimizers import Plan, optimizer_specs, plan_optimizer_runs, sweep_specs
from core.experiments.runs import FINISHED, LR_GRID, Budget, RunSpec, run_state
from core.experiments.symmetry import InitSettings, run_init_experiment

__all__ = [
    "FINISHED",
    "LR_GRID",
    "Budget",
    "InitSettings",
    "Plan",
    "PlannedRun",
    "RunSpec",
    "experiment_lock",
    "optimizer_specs",
    "plan_optimizer_runs",
    "run_init_experiment",
    "run_state",
    "summarize",
    "sweep_specs",
]
