"""The workbench application: four screens (modes) over one training child process that the app owns.

    Train (ctrl+t)  ->  Live (ctrl+l)  ->  Checkpoints (ctrl+o)  ->  Generate (ctrl+g)

The app holds the state that outlives a screen: the training job and its RunState (poemtui.state.training),
an experiment's sequence of runs (poemtui.state.experiment), and which checkpoint Generate writes with.
Screens read that state when shown and subscribe to `training_signal` to hear when it changes; none of them
computes anything: training is `python -m core.train` in a child process, sampling is core.generation.sampler.
"""

from __future__ import annotations

import functools
import gc
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import ClassVar

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.screen import Screen
from textual.signal import Signal

from core.errors import PoemError
from core.training.settings import TrainConfig, default_run_name
from poemtui.app_views import ViewsMixin
from poemtui.dialogs.confirm import ConfirmDialog
from poemtui.dialogs.judge import selected_checkpoint, start_judging
from poemtui.dialogs.welcome import WelcomeDialog
from poemtui.screens.checkpoints import CheckpointsScreen
from poemtui.screens.generate import GenerateScreen
from poemtui.screens.train_form import TrainFormScreen
from poemtui.screens.train_live import LiveScreen
from poemtui.state.catalog import CheckpointEntry, has_checkpoints
from poemtui.state.experiment import NEXT, STOPPED, Experiment, OptimizerComparison
from poemtui.state.judgement import JUDGE_POEMS
from poemtui.state.train_options import preset_values, train_options
from poemtui.state.training import DONE_TEXT, Launch, RunState, TrainingJob, train_command

BUSY = "stop the current run first (ctrl+l, then s)"


class PoemApp(ViewsMixin, App):
    CSS_PATH = "app.tcss"
    TITLE = "poemtui"
    SUB_TITLE = "a Tang-poetry LSTM workbench"
    MODES: ClassVar[dict[str, type[Screen]]] = {
        "train": TrainFormScreen,
        "live": LiveScreen,
        "checkpoints": CheckpointsScreen,
        "generate": GenerateScreen,
    }
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+q", "quit", "Quit", id="app.quit", priority=True, show=False),
        Binding("ctrl+t,f2", "switch_mode('train')", "Train", id="app.train"),
        Binding("ctrl+l,f3", "switch_mode('live')", "Live", id="app.live"),
        Binding("ctrl+o,f4", "switch_mode('checkpoints')", "Checkpoints", id="app.checkpoints"),
        Binding("ctrl+g,f5", "switch_mode('generate')", "Generate", id="app.generate"),
    ]
    HORIZONTAL_BREAKPOINTS: ClassVar[list[tuple[int, str]]] = [
        (0, "-narrow"),
        (76, "-normal"),
        (150, "-wide"),
    ]

    def __init__(
        self, checkpoints_dir: Path = Path("checkpoints"), python: str = sys.executable, welcome: bool = True
    ):
        freeze_imported_objects()
        super().__init__()
        self.checkpoints_dir = Path(checkpoints_dir)
        self.python = python
        self.welcome = welcome
        self.run_state: RunState | None = None
        self.job: TrainingJob | None = None
        self.generate_path: Path | None = None
        self.resume_request: CheckpointEntry | None = None
        self.fine_tune_request: CheckpointEntry | None = None
        self.experiment: Experiment | None = None
        self.comparison = OptimizerComparison()  # what the palette's experiment runs
        self.judge_poems = JUDGE_POEMS  # what the palette's judge samples (fewer where the corpus has fewer)
        # The run changed: the trainer's event kind (batch, eval, checkpoint, done, error), or "stopping" /
        # "exit" for the process itself. Screens subscribe when mounted; batch bursts reach them coalesced.
        self.training_signal: Signal[str] = Signal(self, "training-changed")

    class TrainingChanged(Message):
        """Posted by the app to itself for each event of the training child (see `training_signal`)."""

        def __init__(self, kind: str) -> None:
            super().__init__()
            self.kind = kind

        def can_replace(self, message: Message) -> bool:
            # Tens of batch events a second: a newer one makes a queued one pointless (the state holds all).
            return (
                self.kind == "batch"
                and isinstance(message, PoemApp.TrainingChanged)
                and message.kind == "batch"
            )

    @functools.cached_property
    def cuda_available(self) -> bool:
        """Asked only when the form says cuda: torch may initialise its CUDA runtime (not at start-up)."""
        import torch

        return torch.cuda.is_available()

    # --- start-up ---------------------------------------------------------------------------------------

    def on_mount(self) -> None:
        if has_checkpoints(self.checkpoints_dir):
            self.switch_mode("checkpoints")
            return
        self.switch_mode("train")
        if self.welcome:
            self.push_screen(WelcomeDialog(self.checkpoints_dir), self._welcome_answer)

    def _welcome_answer(self, choice: str | None) -> None:
        if choice == "quick":
            self.start_quick()

    # --- training ---------------------------------------------------------------------------------------

    @property
    def training_live(self) -> bool:
        return (self.job is not None and self.job.alive) or bool(self.run_state and self.run_state.live)

    def start_quick(self) -> None:
        """The first-run offer: the quick preset, as the form would start it."""
        values = preset_values("quick")
        self.start_training(train_options(values, preset="quick"), run_name="")

    def start_training(
        self, options: dict[str, object], *, run_name: str = "", resume: Path | None = None
    ) -> bool:
        """Launch `python -m core.train` for these options; refused while another run is live."""
        if self.training_live:
            self.notify(BUSY, title="A run is in progress", severity="warning")
            return False
        run_dir = resume.parent if resume is not None else self.new_run_dir(run_name, options)
        self.launch(Launch(train_command(self.python, run_dir, options, resume=resume), run_dir, resume))
        return True

    def launch(self, launch: Launch) -> None:
        """Start one `core.train --events jsonl` child: its run becomes the app's run, the Live screen's."""
        self.run_state = launch.new_state()
        self.job = TrainingJob(self.run_state, launch.command, on_change=self._training_event)
        self._run_job(self.job)
        self.switch_mode("live")

    @work(group="training", exit_on_error=False)
    async def _run_job(self, job: TrainingJob) -> None:
        await job.run()

    def new_run_dir(self, name: str, options: dict[str, object]) -> Path:
        base = name or default_run_name(TrainConfig.from_dict(options))
        path, n = self.checkpoints_dir / base, 2
        while path.exists() and not name:
            path, n = self.checkpoints_dir / f"{base}-{n}", n + 1
        return path

    def stop_training(self) -> None:
        if self.experiment is not None:
            self.experiment.stop()
        if self.job is not None:
            self.job.stop()

    def _training_event(self, kind: str) -> None:
        self.post_message(self.TrainingChanged(kind))

    def on_poem_app_training_changed(self, message: TrainingChanged) -> None:
        self.training_signal.publish(message.kind)
        if message.kind == "exit" and self.run_state is not None:
            self._announce_end(self.run_state)
            if self.experiment is not None:
                self._experiment_next(self.run_state)

    def _announce_end(self, s: RunState) -> None:
        if s.status == "failed":
            self.notify(s.failure or "failed", title="Training failed", severity="error", timeout=10)
        else:
            best = f"best dev perplexity {s.best_dev_ppl:.2f}" if s.best_dev_ppl else ""
            self.notify(best, title=f"Training {DONE_TEXT.get(s.status, s.status).split(':')[0]}", timeout=8)

    # --- experiments: runs one after another (poemtui.state.experiment keeps the sequence) -----------------

    def start_optimizer_experiment(self) -> None:
        """Compare the optimizers: core.experiments' plan, one run after another in the app (resumable)."""
        if self.training_live:
            self.notify(BUSY, title="A run is in progress", severity="warning")
            return
        plan = self.comparison
        try:
            exp = Experiment.optimizers(plan, self.checkpoints_dir, self.python)
        except PoemError as exc:
            self.notify(str(exc), title="Experiment not started", severity="error", timeout=12)
            return
        if exp.done:
            self.notify(
                f"every run in {exp.folder} is done: here they are, compared",
                title="Experiment already complete",
                timeout=10,
            )
            self.open_compare([exp.folder], plan.title)
            return
        resumed = f" ({exp.resumed} resumed)" if exp.resumed else ""
        self.notify(
            f"{exp.total} runs, one after another: {', '.join(exp.names)}{resumed}. The {plan.corpus} model, "
            f"{plan.steps} steps each, in {exp.folder}. Stop (s on the Live screen) ends the sequence; "
            "launch it again to carry on.",
            title=f"Experiments: {plan.title}",
            timeout=15,
        )
        self.experiment = exp
        self.launch(exp.next_launch())

    def _experiment_next(self, s: RunState) -> None:
        """A run of the sequence ended: the next one starts, unless the user stopped this one."""
        exp = self.experiment
        assert exp is not None
        after = exp.run_ended(s)
        if after == NEXT:
            self.launch(exp.next_launch())
            return
        self.experiment = None
        if after == STOPPED:
            self.notify(
                f"during run {exp.started} of {exp.total} ({exp.current_name}); launch it again "
                "to carry on from its last checkpoint (finished runs are skipped)",
                title="Experiment stopped",
                timeout=10,
            )
        else:
            self.notify(
                "palette: Experiments: compare the optimizer runs; `python -m core.experiments optimizers"
                f" --budget-steps {self.comparison.steps} --checkpoints {self.checkpoints_dir}`"
                " writes the table",
                title="Experiment finished",
                timeout=15,
            )

    def _end_experiment(self) -> None:
        """The app closes: release the experiment's lock (a later launch resumes the run it stopped)."""
        if self.experiment is not None:
            self.experiment.close()
            self.experiment = None

    # --- navigation between screens ---------------------------------------------------------------------

    def open_generate(self, path: Path) -> None:
        self.generate_path = Path(path)
        self.switch_mode("generate")

    def open_resume(self, entry: CheckpointEntry) -> None:
        if self.training_live:
            self.notify("stop the current run first", title="A run is in progress", severity="warning")
            return
        self.resume_request = entry  # the form takes it when shown (it may not exist yet)
        self.switch_mode("train")
        if isinstance(self.screen, TrainFormScreen) and self.screen.is_mounted:
            self.screen.take_resume_request()

    def forget_checkpoint(self, path: Path) -> None:
        if self.generate_path is not None and self.generate_path == path:
            self.generate_path = None

    # --- keys and command palette ---------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # The key to the screen already shown would do nothing: keep it out of the footer.
        return not (action == "switch_mode" and parameters and parameters[0] == self.current_mode)

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield SystemCommand(
            "Train: configure a run", "The training form (ctrl+t)", lambda: self.switch_mode("train")
        )
        yield SystemCommand(
            "Train: quick start", "Train the quick preset now (under a minute on a CPU)", self.start_quick
        )
        yield SystemCommand(
            "Train: watch the run",
            "Live numbers, curves and samples (ctrl+l)",
            lambda: self.switch_mode("live"),
        )
        yield SystemCommand(
            "Experiments: compare optimizers on tang300",
            f"One run per optimizer, {self.comparison.steps} steps each, one after another (resumable)",
            self.start_optimizer_experiment,
        )
        yield from self.view_commands()
        if self.training_live:
            yield SystemCommand("Train: stop the run", "Save a checkpoint and stop", self.confirm_stop)
        yield SystemCommand(
            "Checkpoints: browse",
            "Every run and checkpoint (ctrl+o)",
            lambda: self.switch_mode("checkpoints"),
        )
        yield SystemCommand(
            "Generate: write poems",
            "With the chosen checkpoint (ctrl+g)",
            lambda: self.switch_mode("generate"),
        )
        judged = selected_checkpoint(self, screen)
        if judged is not None:
            yield SystemCommand(
                "Judge the selected checkpoint",
                f"{judged.name}: its poems against real ones, two discriminators; saved beside it",
                lambda: start_judging(self, judged, self.judge_poems),
            )
        yield from super().get_system_commands(screen)

    def confirm_stop(self) -> None:
        """Stop the run, if the user says so: the trainer finishes its batch and saves a checkpoint first."""

        def answer(yes: bool | None) -> None:
            if yes:
                self.stop_training()

        self.push_screen(
            ConfirmDialog(
                "Stop training?",
                "The trainer finishes its batch, saves a checkpoint of the current state "
                "(you can resume it later) and stops.",
                yes="Stop",
                no="Keep training",
            ),
            answer,
        )

    # --- quitting ---------------------------------------------------------------------------------------

    async def action_quit(self) -> None:
        if not (self.job is not None and self.job.alive):
            self.exit()
            return

        def answer(yes: bool | None) -> None:
            if yes:
                self._stop_and_exit()

        self.push_screen(
            ConfirmDialog(
                "Training is running",
                "Quitting stops it: the trainer saves a checkpoint "
                "first (a few seconds), then the app closes.",
                yes="Stop and quit",
                no="Keep training",
            ),
            answer,
        )

    @work(group="quit", exit_on_error=False)
    async def _stop_and_exit(self) -> None:
        self.notify("saving a checkpoint, then quitting…", title="Stopping")
        self._end_experiment()
        if self.job is not None:
            await self.job.shutdown()
        self.exit()

    async def on_unmount(self) -> None:
        self._end_experiment()
        if self.job is not None and self.job.alive:
            await self.job.shutdown(grace_s=15)


@functools.cache
def freeze_imported_objects() -> None:
    """torch and the engine bring ~200k long-lived objects; a full garbage collection over them takes hundreds
    of milliseconds and would now and then freeze the UI. Once per process, move them out of the collector."""
    gc.freeze()
