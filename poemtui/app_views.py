"""The views opened from Checkpoints (Compare, Fine-tune, Inspect) as the app opens them: by key from the
Checkpoints screen (space and c, f, i) and from the command palette (`view_commands`). A mixin of PoemApp."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from textual.app import SystemCommand

from poemtui.screens.checkpoints import CheckpointsScreen
from poemtui.screens.train_form import TrainFormScreen
from poemtui.state.catalog import CheckpointEntry


class ViewsMixin:
    def open_fine_tune(self, entry: CheckpointEntry) -> None:
        """The training form, prefilled to fine-tune from `entry` (core.train --init-from)."""
        self.fine_tune_request = entry
        self.switch_mode("train")
        if isinstance(self.screen, TrainFormScreen) and self.screen.is_mounted:
            self.screen.take_resume_request()

    def open_compare(self, runs: list[Path], title: str = "") -> None:
        """The Compare screen over these run folders (or an experiment's folder: its runs)."""
        from poemtui.screens.compare import CompareScreen

        self.push_screen(CompareScreen(runs, title))

    def open_inspect(self, checkpoint: Path | None = None) -> None:
        """The Inspect screen on a checkpoint (the one Generate writes with, if none is given)."""
        from poemtui.screens.inspect import InspectScreen

        path = checkpoint or self.generate_path
        if path is None:
            self.notify("choose a checkpoint first (ctrl+o, then i)", title="Inspect", severity="warning")
            return
        self.push_screen(InspectScreen(Path(path)))

    def compare_optimizer_runs(self) -> None:
        """The optimizer experiment's runs in the Compare screen (`python -m core.experiments optimizers`)."""
        from core.experiments.runs import experiment_dir

        folder = experiment_dir(self.checkpoints_dir, "optimizers", self.comparison.corpus)
        if not folder.is_dir():
            self.notify(
                f"no runs in {folder} yet: run the experiment first (palette: Experiments)",
                title="Compare optimizers",
                severity="warning",
            )
            return
        self.open_compare([folder], f"optimizers on {self.comparison.corpus}")

    def _checkpoints_screen(self) -> CheckpointsScreen | None:
        try:
            stack = self.get_screen_stack("checkpoints")
        except KeyError:  # not shown yet
            return None
        screen = stack[0] if stack else None
        return screen if isinstance(screen, CheckpointsScreen) and screen.is_mounted else None

    def _compare_marked(self) -> None:
        screen = self._checkpoints_screen()
        if screen is None or len(screen.marked) < 2:
            self.switch_mode("checkpoints")
            self.notify("mark two runs or more with space, then c", title="Compare")
            return
        self.open_compare(list(screen.marked))

    def _on_checkpoints(self, action: str) -> None:
        screen = self._checkpoints_screen()
        entry = screen.selected if screen is not None else None
        if entry is None or not entry.readable:
            self.switch_mode("checkpoints")
            self.notify("highlight a checkpoint first", title="Checkpoints")
            return
        if action == "fine_tune":
            self.open_fine_tune(entry)
        else:
            self.open_inspect(entry.path)

    def view_commands(self) -> Iterable[SystemCommand]:
        yield SystemCommand(
            "Experiments: compare the optimizer runs",
            "Their curves overlaid and the settings that differ (the Compare screen)",
            self.compare_optimizer_runs,
        )
        yield SystemCommand(
            "Checkpoints: compare marked runs",
            "Mark runs with space in Checkpoints, then c",
            self._compare_marked,
        )
        yield SystemCommand(
            "Checkpoints: fine-tune the highlighted checkpoint",
            "The training form, starting from its weights (f in Checkpoints)",
            lambda: self._on_checkpoints("fine_tune"),
        )
        yield SystemCommand(
            "Inspect: look inside the model",
            "Surprisal, top-5, gates, tracking units and ‖∂L/∂h_t‖ of a poem (i in Checkpoints)",
            lambda: self._on_checkpoints("inspect"),
        )
