"""What one checkpoint holds: its configuration, vocabulary, progress, and its run's curves."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Static

from core.corpus.buckets import CROPPED_MODES
from core.runs.metrics import read_events
from poemtui.state.catalog import CheckpointEntry, human_date, human_size
from poemtui.state.judgement import judgement_rows, read_judgement
from poemtui.widgets.format import duration, number, rate
from poemtui.widgets.run_chart import RunChart


def parameter_count(model: dict) -> int | None:
    """Weights of our LSTM language model, from its config (embedding, per-layer LSTM, output head)."""
    try:
        v, e, h, layers = (int(model[k]) for k in ("vocab_size", "embed_size", "hidden_size", "num_layers"))
    except (KeyError, TypeError, ValueError):
        return None
    lstm = sum(4 * h * ((e if k == 0 else h) + h + 1) for k in range(layers))
    head = (0 if model.get("tie_weights") else v * h) + v
    return v * e + lstm + head


def _table(rows: list[tuple[str, str]]) -> Table:
    table = Table.grid(padding=(0, 1))
    table.add_column(style="dim", no_wrap=True)
    table.add_column()
    for key, value in rows:
        table.add_row(key, value)
    return table


def describe(entry: CheckpointEntry) -> Table | Text:
    if not entry.readable:
        return Text.assemble(
            ("unreadable: ", "bold red"),
            (entry.error or "", "red"),
            "\n",
            (f"{entry.path} · {human_size(entry.size)} · {human_date(entry.mtime)}", "dim"),
        )
    m, t, p = entry.model, entry.train, entry.progress
    corpus = entry.section("corpus")
    options = corpus.get("options") if isinstance(corpus.get("options"), dict) else {}
    params = parameter_count(m)
    lr = t.get("lr")
    tags = f" ({', '.join(entry.tags)})" if entry.tags else ""
    vocab = f"{entry.vocab_size:,} characters" if entry.vocab_size else "? characters"
    step = p.get("step")
    elapsed = p.get("elapsed_s")
    forms = str(options.get("forms", "?"))
    if options.get("train_forms", forms) != forms:
        forms += f", trained on {options['train_forms']}"
    rows = [
        ("file", f"{entry.label}{tags}"),
        (
            "data",
            f"{corpus.get('name', '?')} ({options.get('script', '?')}, forms {forms}) · vocabulary {vocab}",
        ),
        (
            "model",
            f"embedding {m.get('embed_size')} · hidden {m.get('hidden_size')} · "
            f"{m.get('num_layers')} layer(s) · dropout {m.get('dropout')} · "
            f"{params:,} weights"
            if params
            else "?",
        ),
        (
            "training",
            f"{entry.optimizer}, lr {rate(lr) if isinstance(lr, float) else 'default'} · "
            f"batch {t.get('batch_size')} · {sequences(t)} · "
            f"{t.get('epochs')} epochs, patience {t.get('patience')}",
        ),
        (
            "progress",
            f"epoch {entry.epoch}, batch {entry.batch} · step {step:,} · "
            f"{p.get('tokens_seen', 0):,} tokens · {duration(elapsed)} of training"
            if isinstance(step, int) and isinstance(elapsed, int | float)
            else "?",
        ),
        (
            "dev",
            f"perplexity {number(entry.dev_ppl)} · loss {number(p.get('dev_loss'), 3)} · "
            f"best of the run {number(p.get('best_dev_ppl'))}",
        ),
        ("saved", f"{human_date(entry.mtime)} · {human_size(entry.size)}"),
    ]
    return _table(rows)


class CheckpointDetail(Vertical):
    DEFAULT_CSS = """
    CheckpointDetail { height: 1fr; }
    CheckpointDetail #detail-info { height: auto; }
    CheckpointDetail #detail-judge { height: auto; margin-top: 1; }
    CheckpointDetail RunChart { height: 1fr; min-height: 8; }
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._curves: dict[str, tuple[tuple[int, int], list, list]] = {}
        self._entry: CheckpointEntry | None = None

    def compose(self) -> ComposeResult:
        yield Static("", id="detail-info")
        yield Static("", id="detail-judge")
        yield RunChart(id="detail-chart", empty_text="this run has no metrics.jsonl to plot")

    def show(self, entry: CheckpointEntry | None) -> None:
        info = self.query_one("#detail-info", Static)
        chart = self.query_one(RunChart)
        self._entry = entry
        self.refresh_judgement()
        if entry is None:
            info.update("")
            chart.display = False
            return
        info.update(describe(entry))
        chart.display = entry.readable
        if entry.readable:
            chart.show(*self.curves(entry))

    def refresh_judgement(self) -> None:
        """The saved judge result of the shown checkpoint (poemtui.state.judgement), if there is one."""
        panel = self.query_one("#detail-judge", Static)
        doc, current = read_judgement(self._entry.path) if self._entry and self._entry.readable else (None, 0)
        panel.display = doc is not None
        panel.update(_table(judgement_rows(doc, current)) if doc else "")

    def curves(self, entry: CheckpointEntry) -> tuple[list, list]:
        """(losses, evals) of the entry's run, re-read only when its metrics.jsonl changed."""
        if not entry.run:
            return [], []
        path = entry.path.parent / "metrics.jsonl"
        try:
            st = path.stat()
            stamp = (st.st_mtime_ns, st.st_size)
        except OSError:
            return [], []
        cached = self._curves.get(str(path))
        if cached is None or cached[0] != stamp:
            events = read_events(entry.path.parent)
            losses = [
                (e["step"], e["loss"])
                for e in events
                if e.get("event") == "batch"
                and isinstance(e.get("loss"), int | float)
                and isinstance(e.get("step"), int)
            ]
            evals = [e for e in events if e.get("event") == "eval" and isinstance(e.get("step"), int)]
            cached = self._curves[str(path)] = (stamp, losses, evals)
        return cached[1], cached[2]


def sequences(train: dict) -> str:
    """How the run made its rows: "poem sequences", or with the crop length of stream and mixed ones."""
    mode = train.get("seq_mode")
    if mode in CROPPED_MODES:
        return f"{mode} sequences of {train.get('seq_len')}"
    return f"{mode} sequences"
