"""Train — configure: a form for a training run, checked as it is typed; Start launches the child process."""

from __future__ import annotations

import math
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Button, Footer, Header, Input, Label, Select, Static

from poemtui.state import train_options as opts
from poemtui.state.catalog import CheckpointEntry
from poemtui.widgets.form_field import FormField

PRESET_TEXT = {
    "quick": "a small model on 唐诗三百首: real learning within a minute on a CPU",
    "tang300": "the assignment's setting on 唐诗三百首: hidden 256, batch 30, dropout 0.5",
    "quantangshi": "全唐诗's regular poems, a 2×512 LSTM: about 20 minutes on 2 CPU cores (test ppl 93)",
}
COLUMNS = {
    "Data": ("corpus", "corpus_file", "seq_mode", "seq_len", "batch_size", "run_name", "init_from"),
    "Model and optimizer": ("embed_size", "hidden_size", "num_layers", "dropout", "optimizer", "lr"),
    "Schedule": ("epochs", "patience", "eval_every", "save_every", "device"),
}


class TrainFormScreen(Screen):
    CSS_PATH = "train_form.tcss"
    TITLE = "Train"
    SUB_TITLE = "configure a run"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+s", "start", "Start", id="train.start"),
        Binding("ctrl+s", "resume", "Resume", id="train.resume"),
        Binding("escape", "new_run", "New run instead", id="train.new_run"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.resume_entry: CheckpointEntry | None = None
        self.problems: dict[str, str] = {}
        self.values: dict[str, object] = {}
        self._filling = False

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(id="form"):
            yield Static("", id="banner")
            with Horizontal(id="preset-row"):
                yield FormField("preset", "Preset", value=opts.FIRST_RUN_PRESET, choices=tuple(opts.PRESETS))
                yield Static(PRESET_TEXT.get(opts.FIRST_RUN_PRESET, ""), id="preset-text")
            values = opts.preset_values(opts.FIRST_RUN_PRESET)
            with Horizontal(id="columns"):
                for title, names in COLUMNS.items():
                    with Vertical(classes="column"):
                        yield Label(title, classes="column-title")
                        for name in names:
                            spec = opts.FIELD_BY_NAME[name]
                            yield FormField(
                                name,
                                spec.label,
                                value=opts.as_text(values.get(name)),
                                choices=spec.choices,
                                help_text=spec.help,
                                placeholder=self._placeholder(name, values),
                            )
            yield Static("", id="field-help")
            with Horizontal(id="actions"):
                yield Button("Start training (ctrl+s)", id="start", variant="primary")
                yield Static("", id="form-status")
        yield Footer(compact=True)

    def _placeholder(self, name: str, values: dict) -> str:
        if name == "lr":
            return f"default {opts.lr_placeholder(str(values.get('optimizer', 'adam')))}"
        if name == "run_name":
            return "automatic"
        if name == "corpus_file":
            return "path/to/poems.txt"
        if name == "init_from":
            return "new weights (f on a checkpoint)"
        return ""

    def on_mount(self) -> None:
        self.app.training_signal.subscribe(self, self.training_changed)
        self._sync_visibility()
        self.validate()
        self.query_one("#field-preset", Select).focus()
        self.take_resume_request()

    def on_screen_resume(self) -> None:
        self.take_resume_request()
        self.validate()

    def training_changed(self, kind: str) -> None:
        """A run ended while the form is shown: its status line no longer says a run is in progress."""
        if kind == "exit" and self in self.app.screen_stack:
            self.validate()

    def take_resume_request(self) -> None:
        """The browser asked to resume a checkpoint: switch the form to that run."""
        entry, self.app.resume_request = self.app.resume_request, None
        if entry is not None:
            self.set_resume(entry)
        entry, self.app.fine_tune_request = self.app.fine_tune_request, None
        if entry is not None:
            self.set_fine_tune(entry)

    # --- values --------------------------------------------------------------------------------------------

    def fields(self) -> dict[str, FormField]:
        return {f.field_name: f for f in self.query(FormField) if f.field_name != "preset"}

    def raw(self) -> dict[str, str]:
        return {name: f.text for name, f in self.fields().items()}

    def fill(self, values: dict[str, object]) -> None:
        self._filling = True
        try:
            for name, field in self.fields().items():
                if name in values:
                    field.set_text(opts.as_text(values[name]))
        finally:
            self._filling = False
        self._sync_visibility()
        self.validate()

    def apply_preset(self, name: str) -> None:
        self.fill(opts.preset_values(name))
        self.query_one("#preset-text", Static).update(PRESET_TEXT.get(name, ""))

    def validate(self) -> dict[str, str]:
        resume = self.resume_entry is not None
        self.values, problems = opts.check(
            self.raw(),
            cuda_available=lambda: self.app.cuda_available,
            runs_root=self.app.checkpoints_dir,
            resume=resume,
        )
        if resume:
            problems = {k: v for k, v in problems.items() if k in opts.RESUMABLE}
            problems.update(self._resume_problems())
        self.problems = problems
        for name, field in self.fields().items():
            field.set_error(problems.get(name))
        self.query_one("#start", Button).disabled = bool(problems)
        status = self.query_one("#form-status", Static)
        if problems:
            n = len(problems)
            status.update(f"{n} field{'s' * (n != 1)} to fix before starting")
        elif self.app.training_live:
            status.update("a run is in progress: stop it first (ctrl+l to watch it)")
        else:
            status.update("ready")
        return problems

    def _resume_problems(self) -> dict[str, str]:
        entry = self.resume_entry
        assert entry is not None
        done = entry.progress.get("epoch", 0) if entry.progress.get("batch", 0) == 0 else None
        epochs = self.values.get("epochs")
        if isinstance(done, int) and isinstance(epochs, int) and epochs <= done:
            return {"epochs": f"the run already did {done} epochs: raise this to continue"}
        return {}

    # --- events --------------------------------------------------------------------------------------------

    def on_select_changed(self, event: Select.Changed) -> None:
        if event.select.id == "field-preset":
            if not self._filling and self.resume_entry is None and not self.fine_tuning:
                self.apply_preset(str(event.value))
            return
        if event.select.id == "field-optimizer":
            self.query_one(
                "#field-lr", Input
            ).placeholder = f"default {opts.lr_placeholder(str(event.value))}"
        self._sync_visibility()
        if not self._filling:
            self.validate()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "field-init_from" and not self._filling:
            self._sync_visibility()
        if not self._filling:
            self.validate()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.focus_next()

    def on_descendant_focus(self, event) -> None:
        field_id = (event.widget.id or "").removeprefix("field-")
        spec = opts.FIELD_BY_NAME.get(field_id)
        text = (
            spec.help
            if spec
            else ("choose a starting point; every field stays editable" if field_id == "preset" else "")
        )
        self.query_one("#field-help", Static).update(text)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "start":
            self.action_start()

    def _sync_visibility(self) -> None:
        fields = self.fields()
        fields["corpus_file"].display = fields["corpus"].text == "file"
        fields["seq_len"].control.disabled = (
            fields["seq_mode"].text not in opts.CROPPED_MODES or self.resume_entry is not None
        )
        if self.resume_entry is None:  # a fine-tune's model shape is its checkpoint's (and no preset)
            tuned = self.fine_tuning
            for name in opts.FINE_TUNE_FIXED:
                fields[name].control.disabled = tuned
            self.query_one("#preset-row").display = not tuned

    # --- resume -----------------------------------------------------------------------------------------

    def set_resume(self, entry: CheckpointEntry) -> None:
        """Continue the run of `entry`: its configuration is fixed, only the schedule may change."""
        self.resume_entry = entry
        train = dict(entry.train)
        progress = entry.progress
        done = progress.get("epoch", 0) if progress.get("batch", 0) == 0 else None
        if isinstance(done, int) and train.get("epochs", 0) <= done:
            train["epochs"] = done + 5
        values = opts.preset_values(opts.FIRST_RUN_PRESET)
        values.update({k: v for k, v in train.items() if k in opts.CONFIG_FIELDS})
        corpus = str(train.get("corpus", ""))
        if corpus not in opts.CORPORA[:2]:
            values["corpus"], values["corpus_file"] = "file", corpus
        values["run_name"] = entry.run
        self.fill(values)
        for name, field in self.fields().items():
            field.control.disabled = name not in opts.RESUMABLE
        self.query_one("#preset-row").display = False
        best = progress.get("best_dev_ppl")
        best_text = (
            f", best dev ppl {best:.2f}" if isinstance(best, int | float) and math.isfinite(best) else ""
        )
        self.query_one("#banner", Static).update(
            f"[b]Resuming[/b] {entry.label} "
            f"(epoch {entry.epoch}, step {progress.get('step', '?')}{best_text}). "
            "The model, data and optimizer are the checkpoint's; only the schedule can change. "
            "[dim]esc: configure a new run instead[/dim]"
        )
        self.query_one("#banner").add_class("-shown")
        self.query_one("#start", Button).label = "Resume training (ctrl+s)"
        self.query_one("#field-epochs", Input).focus()
        self.sub_title = "resume a run"
        self.refresh_bindings()
        self.validate()

    # --- fine-tune ------------------------------------------------------------------------------------------

    @property
    def fine_tuning(self) -> bool:
        return bool(self.query_one("#row-init_from", FormField).text.strip())

    def set_fine_tune(self, entry: CheckpointEntry) -> None:
        """A new run from the weights of `entry` (core.train --init-from): its settings, the fine-tuning
        schedule; the corpus, schedule and name stay editable, the model's shape is the checkpoint's."""
        if self.resume_entry is not None:
            self.action_new_run()
        self.fill(opts.fine_tune_values(entry.train, entry.model, entry.path))
        ppl = entry.dev_ppl
        self.show_banner(
            f"[b]Fine-tuning[/b] from {entry.label}{f' (dev ppl {ppl:.2f})' if ppl else ''}: its weights and "
            "model, a fresh optimizer. Pick the corpus (a file of your poems: corpus = file) and start. "
            "[dim]clear “Start from” for new weights[/dim]"
        )
        self.sub_title = "fine-tune a checkpoint"
        self.query_one("#field-corpus", Select).focus()
        self.validate()

    def action_new_run(self) -> None:
        if self.resume_entry is None:
            return
        self.resume_entry = None
        for field in self.fields().values():
            field.control.disabled = False
        self.query_one("#start", Button).label = "Start training (ctrl+s)"
        self.sub_title = "configure a run"
        self.show_banner("")
        self.query_one("#preset-row").display = True
        self.query_one("#field-preset", Select).focus()
        self.apply_preset(self.query_one("#row-preset", FormField).text)
        self.refresh_bindings()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("new_run", "resume"):
            return self.resume_entry is not None
        if action == "start":
            return self.resume_entry is None
        return True

    def action_resume(self) -> None:
        self.action_start()

    def show_banner(self, text: str) -> None:
        banner = self.query_one("#banner", Static)
        banner.update(text)
        banner.set_class(bool(text), "-shown")

    # --- start ------------------------------------------------------------------------------------------

    def action_start(self) -> None:
        problems = self.validate()
        if problems:
            name = next(iter(problems))
            self.fields()[name].control.focus()
            self.notify(
                f"{opts.FIELD_BY_NAME[name].label}: {problems[name]}", title="Not started", severity="error"
            )
            return
        resume = self.resume_entry.path if self.resume_entry else None
        run_name = str(self.values.get("run_name") or "")
        preset = self.query_one("#row-preset", FormField).text
        options = opts.train_options(self.values, resume=resume is not None, preset=preset)
        if options.get("init_from"):
            self.show_banner("")
            self.sub_title = "configure a run"
        started = self.app.start_training(options, run_name=run_name, resume=resume)
        if started and resume is not None:
            self.action_new_run()  # the form is ready for a new run when the user comes back
