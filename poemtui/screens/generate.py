"""Generate: type seed characters, press Enter, watch poems being sampled; keep and save them."""

from __future__ import annotations

import time
from pathlib import Path
from typing import ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Grid, Horizontal, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Header, Input, Label, Select, Static
from textual.worker import get_current_worker

from core.errors import PoemError
from core.generation.sampler import Sampler
from core.generation.settings import SampleSettings
from core.options import OptionError, brief
from poemtui.dialogs.save_poems import SavePoemsDialog
from poemtui.state import catalog
from poemtui.state.poems import append_poems, poems_file_text
from poemtui.state.tones import ToneView, tone_view
from poemtui.widgets.form_field import FormField
from poemtui.widgets.poem_block import PoemBlock
from poemtui.widgets.session_figures import SessionFigures

SETTINGS = SampleSettings.specs()  # each option's label, kind, choices, range and help (declared once)
OPTIONS = (
    "temperature",
    "top_k",
    "top_p",
    "num",
    "form",
    "lines",
    "gelv",
    "prosody",
    "rhyme",
    "acrostic",
    "seed",
    "unk",
)
SWITCH = ("off", "on")  # how a yes/no setting reads in a Select


def option_field(name: str) -> FormField:
    """The options grid's field for a sampling setting, from its declaration."""
    spec = SETTINGS[name]
    choices = SWITCH if spec.kind is bool else tuple(map(str, spec.choices))
    value = SWITCH[bool(spec.default)] if spec.kind is bool else spec.show(spec.default)
    if name == "lines":
        value = "4"  # what form 5 or 7 means without a number of lines
    return FormField(
        name, spec.label, value=value, choices=choices, help_text=spec.help, placeholder=spec.none
    )


REGULAR_FORMS = ("5", "7")
CHECK_AFTER_S = 0.15  # typing pause after which the seed is checked against the model's vocabulary
NO_CHECKPOINT = """\
[b]No checkpoint to write with yet.[/b]

A model has to learn before it can write. Press [b]ctrl+t[/b] to train one (the [i]quick[/i] preset takes
under a minute on a CPU), or pick an existing checkpoint in the browser with [b]ctrl+o[/b]."""


class SamplingCancelled(Exception):
    """Raised inside the sampling thread when a newer request replaced it."""


class GenerateScreen(Screen):
    CSS_PATH = "generate.tcss"
    TITLE = "Generate"
    SUB_TITLE = "write poems"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+s", "save", "Save poems", id="generate.save"),
        Binding("ctrl+n", "clear", "Clear", id="generate.clear"),
        Binding("ctrl+y", "toggle_tones", "Tones", id="generate.tones"),
    ]

    class PoemsGrew(Message):
        """The poems being sampled gained a character (posted by the sampling thread to its screen)."""

        def __init__(self, generation: int, texts: list[str]) -> None:
            super().__init__()
            self.generation = generation
            self.texts = texts

        def can_replace(self, message: Message) -> bool:
            return isinstance(message, GenerateScreen.PoemsGrew) and message.generation == self.generation

    def __init__(self) -> None:
        super().__init__()
        self.sampler: Sampler | None = None
        self.checkpoint: Path | None = None
        self.checkpoint_label = ""
        self.load_error: str | None = None
        self.loading = False
        self.problem: str | None = None
        self._check_timer = None
        self.generation = 0
        self.blocks: dict[int, PoemBlock] = {}
        self.show_tones = True  # marks under the characters of every complete poem (ctrl+y)

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="model")
        yield Static(NO_CHECKPOINT, id="no-checkpoint")
        with Horizontal(id="seed-row"):
            yield Label("Seed", id="seed-label")
            yield Input(
                placeholder="first characters, e.g. 白日 (or none) — enter writes a poem", id="seed-input"
            )
        yield Static("", id="seed-error")
        with Grid(id="options"):
            for name in OPTIONS:
                yield option_field(name)
        yield Static("", id="option-help")
        yield SessionFigures(id="session-figures")
        with VerticalScroll(id="poems"):
            yield Static(
                "[dim]Poems you write appear here, newest first. ctrl+s saves them to a text file.[/dim]",
                id="poems-empty",
            )
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one("#no-checkpoint").display = False
        self.sync_dependent_fields()
        self.sync_checkpoint()

    def on_screen_resume(self) -> None:
        self.sync_checkpoint()

    # --- which checkpoint ----------------------------------------------------------------------------------

    def sync_checkpoint(self) -> None:
        """Load the checkpoint the app asks for (or the best one there is), unless it is loaded already."""
        wanted = self.app.generate_path
        if wanted is not None and wanted == self.checkpoint and (self.sampler or self.loading):
            return
        if wanted is None and (self.sampler is not None or self.loading):
            return
        self.load(wanted)

    @work(thread=True, exclusive=True, group="load", exit_on_error=False)
    def load(self, path: Path | None) -> None:
        self.app.call_from_thread(self._loading, path)
        if path is None:
            best = catalog.best_entry(catalog.scan(self.app.checkpoints_dir))
            if best is None:
                self.app.call_from_thread(self._loaded, None, None, None)
                return
            path = best.path
            self.app.call_from_thread(self._loading, path)
        try:
            sampler = Sampler.from_checkpoint(path)
        except PoemError as exc:
            self.app.call_from_thread(self._loaded, path, None, str(exc))
            return
        except Exception as exc:  # a file that passed the header checks but is broken further in
            self.app.call_from_thread(self._loaded, path, None, f"{path.name}: {exc}")
            return
        self.app.call_from_thread(self._loaded, path, sampler, None)

    def _loading(self, path: Path | None) -> None:
        self.loading = True
        self.checkpoint = path
        self.query_one("#model", Static).update(Text(f"loading {path or 'the checkpoints'}…", style="dim"))

    def _loaded(self, path: Path | None, sampler: Sampler | None, error: str | None) -> None:
        if path != self.checkpoint:
            return  # a newer request replaced this one while it loaded
        self.loading = False
        self.checkpoint, self.sampler, self.load_error = path, sampler, error
        self.checkpoint_label = _label(path, self.app.checkpoints_dir) if path else ""
        model = self.query_one("#model", Static)
        self.query_one("#no-checkpoint").display = path is None
        for widget in self.query("#seed-row, #options, #option-help, #poems"):
            widget.display = path is not None
        if path is None:
            model.update("")
            return
        if sampler is None:
            model.update(
                Text.assemble(
                    ("cannot write with ", "bold red"),
                    (self.checkpoint_label, "bold red"),
                    (f": {error}\n", "red"),
                    ("pick another checkpoint with ctrl+o", "dim"),
                )
            )
            model.set_class(True, "-error")
        else:
            model.set_class(False, "-error")
            self.query_one(SessionFigures).set_checkpoint(path)
            model.update(
                Text.assemble(
                    ("writing with ", "dim"),
                    (self.checkpoint_label, "bold"),
                    (f" · {_describe(path)} · ctrl+o picks another", "dim"),
                )
            )
        self.query_one("#seed-input", Input).focus()
        self.check_settings()

    # --- settings ---------------------------------------------------------------------------------------

    def fields(self) -> dict[str, FormField]:
        return {f.field_name: f for f in self.query(FormField)}

    def settings(self) -> tuple[SampleSettings | None, dict[str, str]]:
        """The typed options as SampleSettings, or the problems of the fields that do not parse."""
        problems: dict[str, str] = {}
        values: dict[str, object] = {}
        for name, field in self.fields().items():
            spec, text = SETTINGS[name], field.text
            if spec.kind is bool:
                text = "true" if text == SWITCH[1] else "false"
            try:
                values[name] = spec.parse(text)
            except OptionError as exc:
                problems[name] = brief(str(exc))
        if values.get("form") not in REGULAR_FORMS:
            values["lines"] = None  # the Select keeps its value while disabled
        if self.query_one("#field-rhyme", Input).disabled:
            values["rhyme"] = None  # no rhyme applies (see rhymes()): the Input keeps its text while disabled
        problems = problems or {k: brief(v) for k, v in SampleSettings.problems(values).items()}
        if problems:
            return None, problems
        return SampleSettings(start=self.query_one("#seed-input", Input).value, **values), {}

    def check_settings(self) -> SampleSettings | None:
        """Check as typed: problems appear under their field, and the sampler's verdict under the seed."""
        settings, problems = self.settings()
        for name, field in self.fields().items():
            field.set_error(problems.get(name))
        self.problem = next((f"{name}: {message}" for name, message in problems.items()), None)
        error = self.query_one("#seed-error", Static)
        if settings is None or self.sampler is None:
            error.update("")
            error.remove_class("-shown")
            return None
        try:
            _, warnings = self.sampler.check(settings)
        except PoemError as exc:
            # The engine words this for the command line; here the options are called "Unknown" and "格律".
            message = str(exc).replace("--unk skip", "Unknown: skip").replace("格律 (gelv)", "格律")
            error.update(Text(f"↳ {message}", style="red"))
            error.add_class("-shown")
            self.problem = message
            return None
        error.update(Text("↳ " + "; ".join(warnings), style="yellow") if warnings else "")
        error.set_class(bool(warnings), "-shown")
        return settings

    def check_soon(self) -> None:
        """Field errors at once; the sampler's verdict (tens of ms with a variant hint) once typing pauses."""
        _, problems = self.settings()
        for name, field in self.fields().items():
            field.set_error(problems.get(name))
        if self._check_timer is not None:
            self._check_timer.stop()
        self._check_timer = self.set_timer(CHECK_AFTER_S, self._check_after_pause)

    def _check_after_pause(self) -> None:
        self._check_timer = None
        self.check_settings()

    @property
    def check_pending(self) -> bool:
        """Typed text waits for the sampler's verdict (CHECK_AFTER_S after the last key)."""
        return self._check_timer is not None

    def on_input_changed(self, event: Input.Changed) -> None:
        self.check_soon()

    def on_select_changed(self, event: Select.Changed) -> None:
        if event.select.id == "field-gelv":
            self.gelv_switched(str(event.value) == "on")
        self.sync_dependent_fields()
        self.check_soon()

    def sync_dependent_fields(self) -> None:
        """Lines applies to a regular form only; Rhyme where lines rhyme (rhymes())."""
        form = str(self.query_one("#field-form", Select).value)
        self.query_one("#field-lines", Select).disabled = form not in REGULAR_FORMS
        self.query_one("#field-rhyme", Input).disabled = not self.rhymes()

    def rhymes(self) -> bool:
        """Whether the Rhyme field applies to what the other fields say (SampleSettings.rhyme_applies)."""
        return SampleSettings.rhyme_applies(
            {
                "gelv": str(self.query_one("#field-gelv", Select).value) == "on",
                "form": str(self.query_one("#field-form", Select).value),
                "prosody": str(self.query_one("#field-prosody", Select).value),
            }
        )

    def gelv_switched(self, on: bool) -> None:
        """格律 on: a regular form (the free or auto form becomes 5, and says so), and tones shown."""
        if not on:
            return
        form = self.query_one("#field-form", Select)
        if str(form.value) not in REGULAR_FORMS:
            was = form.value
            form.value = "5"
            self.notify(
                f"格律 needs a regular form: 5 or 7 characters a line (form was {was}, now 5)",
                title="Form set to 5",
            )
        if not self.show_tones:
            self.action_toggle_tones()

    def on_descendant_focus(self, event) -> None:
        name = (event.widget.id or "").removeprefix("field-")
        self.query_one("#option-help", Static).update(SETTINGS[name].help if name in SETTINGS else "")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.write()

    # --- writing ----------------------------------------------------------------------------------------

    def write(self) -> None:
        if self.sampler is None:
            self.notify(
                self.load_error or "no checkpoint loaded yet", title="Cannot write", severity="warning"
            )
            return
        settings = self.check_settings()
        if settings is None:
            self.notify(self.problem or "check the options", title="Not written", severity="warning")
            return
        self.generation += 1
        block = PoemBlock(self.generation, settings.to_dict(), self.checkpoint_label, tones=self.show_tones)
        self.blocks[self.generation] = block
        self.query_one("#poems-empty").display = False
        self.query_one("#poems", VerticalScroll).mount(block, before=0)
        self.query_one("#poems", VerticalScroll).scroll_home(animate=False)
        self.sample(self.sampler, settings, self.generation)

    @work(thread=True, exclusive=True, group="sample", exit_on_error=False)
    def sample(self, sampler: Sampler, settings: SampleSettings, generation: int) -> None:
        worker = get_current_worker()

        def on_step(texts: list[str]) -> None:
            if worker.is_cancelled:
                raise SamplingCancelled
            self.post_message(self.PoemsGrew(generation, texts))

        try:
            poems = sampler.generate(settings, on_step=on_step)
        except SamplingCancelled:
            self.app.call_from_thread(self._failed, generation, "stopped: a newer request replaced it")
            return
        except PoemError as exc:
            self.app.call_from_thread(self._failed, generation, str(exc))
            return
        views = [tone_view(p.text, p.pattern, p.conflicts) for p in poems]  # here: not on the UI's time
        self.app.call_from_thread(
            self._finished, generation, [p.text for p in poems], [p.mean_logprob for p in poems], views
        )

    def on_generate_screen_poems_grew(self, message: PoemsGrew) -> None:
        block = self.blocks.get(message.generation)
        if block is not None and not block.done:
            block.show(message.texts)

    def _finished(
        self, generation: int, texts: list[str], scores: list[float], views: list[ToneView]
    ) -> None:
        self.blocks[generation].finish(texts, scores, views)
        self.query_one(SessionFigures).set_poems([t for b in self.history() for t in b.texts])

    def _failed(self, generation: int, message: str) -> None:
        self.blocks[generation].fail(message)

    # --- history ----------------------------------------------------------------------------------------

    def history(self) -> list[PoemBlock]:
        return [b for _, b in sorted(self.blocks.items()) if b.done and b.texts]

    def action_save(self) -> None:
        blocks = self.history()
        count = sum(len(b.texts) for b in blocks)
        if not count:
            self.notify("write a poem first (type a seed and press enter)", title="Nothing to save")
            return
        default = Path.cwd() / time.strftime("poems-%Y%m%d-%H%M%S.txt")

        def save(path: Path | None) -> None:
            if path is None:
                return
            try:
                added = append_poems(
                    path, poems_file_text((b.checkpoint, b.settings, b.texts) for b in blocks)
                )
            except OSError as exc:
                self.notify(f"{path}: {exc.strerror or exc}", title="Not saved", severity="error")
                return
            poems = f"{count} poem{'s' * (count != 1)}"
            self.notify(str(path), title=f"Added {poems} to the end of" if added else f"Saved {poems}")

        self.app.push_screen(SavePoemsDialog(default, count), save)

    def action_toggle_tones(self) -> None:
        """Show or hide the tone marks under every poem (the 格律 verdict stays)."""
        self.show_tones = not self.show_tones
        for block in self.blocks.values():
            block.set_tones(self.show_tones)

    def action_clear(self) -> None:
        for block in self.blocks.values():
            block.remove()
        self.blocks.clear()
        self.query_one("#poems-empty").display = True
        self.query_one(SessionFigures).set_poems([])


def _label(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path(root).resolve()))
    except ValueError:
        return str(path)


def _describe(path: Path) -> str:
    entry = catalog.read_entry(path, path.parent.name)
    if not entry.readable:
        return "?"
    vocab = f"{entry.vocab_size:,} characters" if entry.vocab_size else "? characters"
    ppl = f" · dev ppl {entry.dev_ppl:.2f}" if entry.dev_ppl is not None else ""
    return f"{entry.corpus} · {vocab}{ppl}"
