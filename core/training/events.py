"""Where a run's events go: `<run>/metrics.jsonl` always, and JSON lines on stdout (`--events jsonl`), a rich
progress display on a terminal, or plain log rows on stderr (DESIGN.md §6).

rich is imported only when a terminal display is made (core's library modules never load UI libraries).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import sys
from collections.abc import Callable
from pathlib import Path

from core.cli import json_line
from core.errors import PoemError
from core.paths import kind_of, why


class Output:
    """Renders events: metrics.jsonl always; JSON lines, a rich live display, or plain rows.

    A reader that goes away (the workbench dies and its end of the events pipe closes; `| head`; a closed
    terminal) must not end the run unsaved: the first write that fails with a broken pipe stops all
    console output, logs an `error` event to metrics.jsonl, says so on stderr if stderr is still there,
    and calls `on_reader_gone` (core.train asks the trainer to stop: it evaluates, saves, exits 141)."""

    def __init__(
        self, run_dir: Path, events_jsonl: bool, quiet: bool, on_reader_gone: Callable[[], None] | None = None
    ):
        self.metrics_path = run_dir / "metrics.jsonl"
        self.metrics = open_log(self.metrics_path)
        self.events_jsonl = events_jsonl
        self.quiet = quiet
        self.on_reader_gone = on_reader_gone
        self.reader_gone = ""  # which stream's reader left ("stdout" / "stderr"), once one has
        self.metrics_failed = False
        self.live = None
        if not events_jsonl and not quiet and sys.stdout.isatty():
            self.live = LiveDisplay()

    def __call__(self, event: dict) -> None:
        line = json_line(event)  # NaN and Infinity (a diverged loss) as null, at any depth
        self._log(line)
        if self.reader_gone:
            return
        if self.events_jsonl:
            self._write(sys.stdout, line + "\n")
        elif event["event"] == "error" and event.get("fatal"):
            return  # the error that ends the run: core.cli says it once, on stderr, as the command exits
        elif self.live is not None:
            try:
                self.live.update(event)
            except OSError as exc:
                self._console_failed(exc, "stdout")
        elif not self.quiet and event["event"] != "batch":
            self._write(sys.stderr, plain_row(event) + "\n")

    def _log(self, line: str) -> None:
        if self.metrics_failed:
            return
        try:
            self.metrics.write(line + "\n")
            self.metrics.flush()  # the workbench plots a live run from this file
        except OSError as exc:
            self.metrics_failed = True  # said once; the trainer's error event is not logged again
            raise PoemError(f"could not write {self.metrics_path}: {why(exc)}") from None

    def _write(self, stream, text: str) -> None:
        try:
            stream.write(text)
            stream.flush()
        except OSError as exc:
            self._console_failed(exc, "stdout" if stream is sys.stdout else "stderr")

    def _console_failed(self, exc: OSError, name: str) -> None:
        if exc.errno not in (errno.EPIPE, errno.EIO, errno.ECONNRESET):
            raise exc
        self.reader_gone = name
        # later writes (and the interpreter's last flush at exit) must not fail again: the stream goes to
        # /dev/null, whatever it still buffers with it
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, (sys.stdout if name == "stdout" else sys.stderr).fileno())
            os.close(devnull)
        message = (
            f"the reader of {name} went away ({why(exc)}): stopping; the run evaluates, saves a checkpoint "
            "and exits 141"
        )
        with contextlib.suppress(PoemError):
            self._log(json_line({"event": "error", "message": message, "reader_gone": name}))
        if name == "stdout":
            with contextlib.suppress(OSError, ValueError):
                sys.stderr.write(f"error: {message}\n")
                sys.stderr.flush()
        if self.on_reader_gone is not None:
            self.on_reader_gone()

    def close(self) -> None:
        if self.live is not None:
            with contextlib.suppress(OSError):
                self.live.stop()
        with contextlib.suppress(OSError):
            self.metrics.close()


def open_log(path: Path):
    """metrics.jsonl opened for appending, or PoemError in one line: it must be a regular file (a FIFO
    of that name would block the run until someone reads it; O_NONBLOCK makes the open fail instead)."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, flags, 0o644)
    except OSError as exc:
        raise PoemError(f"cannot write {path}: {why(exc)}") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise PoemError(f"{path}: {kind_of(mode)}, not a regular file")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "a", encoding="utf-8")


def plain_row(e: dict) -> str:
    kind = e["event"]
    if kind == "eval":
        loss = f"{e['loss']:.3f}" if e.get("loss") is not None else "-"
        return (
            f"| epoch {e['epoch']:3d} | batch {e['batch']:5d} | step {e['step']:6d} | lr {e['lr']:.2e} "
            f"| train loss {loss} | dev loss {e['dev_loss']:.3f} | dev ppl {e['dev_ppl']:8.2f} "
            f"| {e['elapsed_s']:7.1f}s |" + (f"\n  {e['sample']}" if e.get("sample") else "")
        )
    if kind == "checkpoint":
        return f"  saved {e['path']}" + ("  (best)" if e.get("best") else "")
    if kind == "done":
        best = f"{e['best_dev_ppl']:.2f}" if e.get("best_dev_ppl") is not None else "-"
        return (
            f"done ({e['status']}): {e['step']} steps, best dev ppl {best}, {e['elapsed_s']:.0f}s; "
            f"best: {e['best_path']}"
        )
    return f"{kind}: {e.get('message', '')}"


class LiveDisplay:
    """A rich progress bar (epoch, batch, loss, dev ppl, best, tokens/s, elapsed, ETA) and a row per eval."""

    def __init__(self):
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.console = Console(stderr=False)
        self.progress = Progress(
            TextColumn("epoch {task.fields[epoch]}/{task.fields[epochs]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}  dev ppl {task.fields[dev]}  best {task.fields[best]}"),
            TextColumn("{task.fields[speed]} tok/s"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )
        self.progress.start()
        self.task = None
        self.fields = dict(epoch=0, epochs=0, loss="-", dev="-", best="-", speed="-")

    def update(self, e: dict) -> None:
        kind = e["event"]
        if kind == "batch":
            self.fields.update(
                epoch=e["epoch"],
                epochs=e["epochs"],
                loss=f"{e['loss']:.3f}",
                speed=f"{e['tokens_per_s']:,.0f}",
            )
            if self.task is None or self.progress.tasks[self.task].total != e["batches"]:
                if self.task is not None:
                    self.progress.remove_task(self.task)
                self.task = self.progress.add_task("train", total=e["batches"], **self.fields)
            self.progress.update(self.task, completed=e["batch"], **self.fields)
        elif kind == "eval":
            self.fields.update(
                dev=f"{e['dev_ppl']:.2f}", best=f"{e['best_dev_ppl']:.2f}" if e.get("best_dev_ppl") else "-"
            )
            self.progress.console.print(plain_row(e), markup=False, highlight=False)
        else:
            self.progress.console.print(plain_row(e), markup=False, highlight=False)

    def stop(self) -> None:
        self.progress.stop()
