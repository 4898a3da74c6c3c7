"""An experiment inside the workbench: core.experiments' plan of training runs, launched one after another.

Each run is an ordinary `core.train` child (the app's run, live on the Live screen like any other); this
class only keeps the sequence: which run comes next, what its place is ("optimizers-tang300, run 2 of 8"),
the bookkeeping core.experiments asks of whoever launches its runs (`prepare()` before, `finished()` after),
and the experiment's folder lock, held until the sequence ends so that `python -m core.experiments` cannot
train the same runs meanwhile. The app drives it:

    exp = Experiment.optimizers(OptimizerComparison(), checkpoints, python)   # PoemError if refused
    app.launch(exp.next_launch())
    ... the run's process exits ...
    match exp.run_ended(state): "next" -> app.launch(exp.next_launch()); "stopped" | "finished" -> over

The plan holds only the runs still to do (finished ones are skipped, interrupted ones resume), so launching
the same experiment again after a stop carries on where it stopped.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path

from poemtui.state.training import Launch, RunState

# What happens after a run of the sequence ended.
NEXT, STOPPED, FINISHED = "next", "stopped", "finished"


@dataclass
class OptimizerComparison:
    """The palette's optimizer comparison: core.experiments' own plan, on a budget a 2-core CPU trains in
    about a minute per optimizer (the tang300 preset model; `python -m core.experiments` takes more)."""

    corpus: str = "tang300"
    steps: int = 180
    extra: dict[str, object] = field(default_factory=dict)  # more core.train flags for every run

    @property
    def title(self) -> str:
        return f"compare optimizers on {self.corpus}"


class Experiment:
    """A sequence of planned `core.train` runs (core.experiments PlannedRun), started one at a time."""

    def __init__(self, folder: Path, todo: list, lock: contextlib.ExitStack):
        self.folder = folder
        self.todo = list(todo)  # the runs not started yet
        self.total = len(todo)
        self.names = [run.run_dir.name for run in todo]
        self.resumed = sum(run.state == "resume" for run in todo)
        self.lock = lock  # core.experiments' folder lock, released by close()
        self.started = 0
        self.stopped = False  # the user stopped the run: the sequence ends with it
        self.current = None  # the PlannedRun training now

    @classmethod
    def optimizers(cls, plan: OptimizerComparison, checkpoints: Path, python: str) -> Experiment:
        """The runs of the comparison still to do, with the folder locked; raises PoemError when refused
        (another process holds the lock, or the folder's runs were made with other settings). With nothing
        left to do the lock is released at once (`done` is true)."""
        from core.experiments import experiment_lock, plan_optimizer_runs
        from core.experiments.runs import experiment_dir

        lock = contextlib.ExitStack()
        try:
            lock.enter_context(experiment_lock(checkpoints, "optimizers", plan.corpus))
            todo = plan_optimizer_runs(
                plan.corpus,
                budget_steps=plan.steps,
                checkpoints=checkpoints,
                python=python,
                extra=dict(plan.extra),
            )
        except BaseException:
            lock.close()
            raise
        exp = cls(experiment_dir(checkpoints, "optimizers", plan.corpus), todo, lock)
        if exp.done:
            exp.close()
        return exp

    @property
    def title(self) -> str:
        return self.folder.name

    @property
    def done(self) -> bool:
        """Nothing left to start."""
        return not self.todo

    def next_launch(self) -> Launch:
        """The next run of the sequence, prepared (a fresh start clears what a killed run left)."""
        run = self.current = self.todo.pop(0)
        self.started += 1
        run.prepare()
        return Launch.of_command(run.argv, series=f"{self.title}, run {self.started} of {self.total}")

    def stop(self) -> None:
        """The user stopped the current run: the sequence ends when it has saved and exited."""
        self.stopped = True

    def run_ended(self, state: RunState) -> str:
        """The current run's process exited: NEXT (launch `next_launch()`), STOPPED or FINISHED (the lock is
        released)."""
        if state.exit_code is not None and self.current is not None:
            self.current.finished(state.exit_code, state.failure or "")
        if self.stopped or state.status in ("interrupted", "terminated"):
            self.close()
            return STOPPED
        if self.todo:
            return NEXT
        self.close()
        return FINISHED

    @property
    def current_name(self) -> str:
        return self.names[self.started - 1] if self.started else ""

    def close(self) -> None:
        """The sequence is over (finished, stopped, or the app closes): release the experiment's lock."""
        self.lock.close()
