"""Checkpoints: every run and checkpoint under the folder, a detail panel, and what to do with one."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static

from poemtui.dialogs.confirm import ConfirmDialog
from poemtui.state import catalog
from poemtui.state.catalog import CheckpointEntry
from poemtui.throttle import Throttle
from poemtui.widgets.checkpoint_detail import CheckpointDetail
from poemtui.widgets.format import number

COLUMNS = ("run", "epoch", "batch", "dev ppl", "", "date", "optimizer", "corpus", "size", "problem")

EMPTY = """\
[b]No checkpoints in {folder} yet.[/b]

A checkpoint is saved at every evaluation of a training run. Press [b]ctrl+t[/b] to configure one:
the [i]quick[/i] preset trains a small model on 唐诗三百首 in under a minute on a CPU.
(Another folder? Start the app with [b]poemtui --checkpoints DIR[/b].)"""


RESCAN_EVERY_S = 2.0


class CheckpointsScreen(Screen):
    CSS_PATH = "checkpoints.tcss"
    TITLE = "Checkpoints"
    HORIZONTAL_BREAKPOINTS: ClassVar[list[tuple[int, str]]] = [(0, "-narrow"), (130, "-wide")]
    SUB_TITLE = "sorted by dev perplexity"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter,g", "generate", "Write", id="checkpoints.generate"),
        Binding("r", "resume", "Resume", id="checkpoints.resume"),
        Binding("f", "fine_tune", "Fine-tune", id="checkpoints.fine_tune"),
        Binding("i", "inspect", "Inspect", id="checkpoints.inspect"),
        Binding("space", "mark", "Mark", id="checkpoints.mark"),
        Binding("c", "compare", "Compare", id="checkpoints.compare"),
        Binding("d,delete", "delete", "Delete", id="checkpoints.delete"),
        Binding("s", "sort", "Sort", id="checkpoints.sort"),
        Binding("ctrl+r", "rescan", "Refresh", id="checkpoints.refresh", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.entries: list[CheckpointEntry] = []
        self.sort_by = "ppl"
        self._by_key: dict[str, CheckpointEntry] = {}
        self.marked: list[Path] = []  # run folders marked for comparison (space), in the order marked
        self._signature: tuple | None = None
        self._rescan_soon = Throttle(self, RESCAN_EVERY_S, self.rescan)

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="summary")
        yield Static(EMPTY.format(folder=self.app.checkpoints_dir), id="empty")
        with Horizontal(id="panes"):
            table: DataTable = DataTable(id="table", cursor_type="row", zebra_stripes=True)
            table.add_columns(*COLUMNS)
            yield table
            yield CheckpointDetail(id="detail")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.app.training_signal.subscribe(self, self.training_changed)
        self.query_one("#empty").display = False
        self.sub_title = "sorted by dev perplexity"
        self.rescan()

    def on_screen_resume(self) -> None:
        self.rescan()

    def training_changed(self, kind: str) -> None:
        """The run changed (the app's training_signal). A new checkpoint is listed within RESCAN_EVERY_S: a
        run with short epochs saves several a second, and re-listing (with the selected run's curve) on each
        would take CPU from the training. Not shown, the screen waits: it re-lists when shown again."""
        if self not in self.app.screen_stack:
            return
        if kind == "exit":
            self.rescan()
        elif kind == "checkpoint":
            self._rescan_soon()

    # --- listing ----------------------------------------------------------------------------------------

    @work(thread=True, exclusive=True, group="scan", exit_on_error=False)
    def rescan(self) -> None:
        entries = catalog.scan(self.app.checkpoints_dir)
        self.app.call_from_thread(self.show_entries, entries)

    def action_rescan(self) -> None:
        self.rescan()

    def show_entries(self, entries: list[CheckpointEntry]) -> None:
        signature = (self.sort_by, [(str(e.path), e.mtime, e.size, tuple(e.tags), e.error) for e in entries])
        if signature == self._signature:
            return  # nothing changed on disk: keep the table (and the cursor) as they are
        self._signature = signature
        table = self.query_one(DataTable)
        keep = self.selected
        self.entries = catalog.sort_entries(entries, self.sort_by)
        self._by_key = {str(e.path): e for e in self.entries}
        table.clear()
        for e in self.entries:
            table.add_row(*self._row(e), key=str(e.path))
        has_any = bool(self.entries)
        self.query_one("#empty").display = not has_any
        self.query_one("#panes").display = has_any
        bad = sum(not e.readable for e in self.entries)
        runs = len({e.run for e in self.entries})
        text = (
            f"{len(self.entries)} checkpoint{'s' * (len(self.entries) != 1)} in {runs} "
            f"run{'s' * (runs != 1)} under {self.app.checkpoints_dir}"
        )
        if bad:
            text += f" · [b $text-error]{bad} unreadable[/] (why: last column, and below)"
        if self.marked:
            text += f" · [b]{len(self.marked)} marked[/b] (c compares)"
        self.query_one("#summary", Static).update(text if has_any else "")
        if keep is not None and str(keep.path) in self._by_key:
            table.move_cursor(row=table.get_row_index(str(keep.path)))
        self._show_detail()
        self.refresh_bindings()

    def _row(self, e: CheckpointEntry) -> tuple:
        """Run, position, perplexity, best/last...; a file that cannot be read says why in the last column."""
        size, date = catalog.human_size(e.size), catalog.human_date(e.mtime)
        if not e.readable:
            red = "red"
            return (
                Text(e.label, style=red),
                "–",
                "–",
                Text("unreadable", style=red),
                "",
                date,
                "–",
                "–",
                size,
                Text(e.error or "", style=red),
            )
        batch = str(e.batch) if e.batch is not None else "–"
        run = e.run or e.path.name
        return (
            Text("● " + run, style="bold") if e.path.parent in self.marked else run,
            str(e.epoch or "–"),
            batch,
            Text(number(e.dev_ppl), justify="right"),
            Text(" ".join(e.tags), style="bold"),
            date,
            e.optimizer,
            e.corpus,
            size,
            "",
        )

    @property
    def selected(self) -> CheckpointEntry | None:
        table = self.query_one(DataTable)
        if not self.entries or table.row_count == 0:
            return None
        row = min(table.cursor_row, table.row_count - 1)
        key = table.coordinate_to_cell_key((row, 0)).row_key.value
        return self._by_key.get(str(key))

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_detail()
        self.refresh_bindings()

    def _show_detail(self) -> None:
        self.query_one(CheckpointDetail).show(self.selected)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_generate()

    # --- actions ----------------------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("generate", "resume", "delete", "fine_tune", "inspect", "mark"):
            entry = self.selected
            if entry is None:
                return False
            if action in ("generate", "resume", "fine_tune", "inspect") and not entry.readable:
                return None  # shown greyed out: this file cannot be used
        return True

    def action_sort(self) -> None:
        self.sort_by = "date" if self.sort_by == "ppl" else "ppl"
        self.sub_title = "newest first" if self.sort_by == "date" else "sorted by dev perplexity"
        self.show_entries(self.entries)

    def action_generate(self) -> None:
        entry = self.selected
        if entry is None:
            return
        if not entry.readable:
            self.notify(entry.error or "unreadable", title="Cannot write with this file", severity="error")
            return
        self.app.open_generate(entry.path)

    def action_resume(self) -> None:
        entry = self.selected
        if entry is not None and entry.readable:
            self.app.open_resume(entry)

    def action_fine_tune(self) -> None:
        entry = self.selected
        if entry is not None and entry.readable:
            self.app.open_fine_tune(entry)

    def action_inspect(self) -> None:
        entry = self.selected
        if entry is not None and entry.readable:
            self.app.open_inspect(entry.path)

    def action_mark(self) -> None:
        """Mark (or unmark) the highlighted checkpoint's run for comparison."""
        entry = self.selected
        if entry is None:
            return
        run = entry.path.parent
        if run in self.marked:
            self.marked.remove(run)
        else:
            self.marked.append(run)
        self._signature = None  # redraw the rows with their marks
        self.show_entries(self.entries)
        self.query_one(DataTable).action_cursor_down()

    def action_compare(self) -> None:
        if len(self.marked) < 2:
            self.notify("mark two runs or more with space first", title="Compare", severity="warning")
            return
        self.app.open_compare(list(self.marked))

    def action_delete(self) -> None:
        entry = self.selected
        if entry is None:
            return
        state = self.app.run_state
        if state is not None and state.live and Path(state.run_dir).resolve() == entry.path.parent.resolve():
            self.notify("this run is training now: stop it first", title="Not deleted", severity="warning")
            return
        also = f" (also named {', '.join(t + '.safetensors' for t in entry.tags)})" if entry.tags else ""
        body = f"{entry.path}{also}\n\nThe file is removed from disk; this cannot be undone."

        def answer(yes: bool | None) -> None:
            if yes:
                try:
                    removed = catalog.delete_entry(entry)
                except OSError as exc:
                    self.notify(
                        f"{entry.label}: {exc.strerror or exc}", title="Not deleted", severity="error"
                    )
                    return
                self.notify(", ".join(p.name for p in removed), title="Deleted")
                self.app.forget_checkpoint(entry.path)
                self.rescan()

        self.app.push_screen(
            ConfirmDialog(f"Delete {entry.path.name}?", body, yes="Delete", no="Keep", danger=True), answer
        )
