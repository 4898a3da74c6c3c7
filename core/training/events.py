"""Where a run's events go: `<run>/metrics.jsonl` always, and JSON lines on stdout (`--events jsonl`), a rich
progress display on a terminal, or plain log rows on stderr (DESIGN.md §6).

rich is imported only when a terminal display is made (core's library modules never load UI libraries).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path


class Output:
    """Renders events: metrics.jsonl always; JSON lines, a rich live display, or plain rows."""

    def __init__(self, run_dir: Path, events_jsonl: bool, quiet: bool):
        run_dir.mkdir(parents=True, exist_ok=True)
        self.metrics = open(run_dir / "metrics.jsonl", "a", encoding="utf-8")  # noqa: SIM115 (closed in close())
        self.events_jsonl = events_jsonl
        self.quiet = quiet
        self.live = None
        if not events_jsonl and not quiet and sys.stdout.isatty():
            self.live = LiveDisplay()

    def __call__(self, event: dict) -> None:
        line = json.dumps(_json_safe(event), ensure_ascii=False, allow_nan=False, default=_json_default)
        self.metrics.write(line + "\n")
        self.metrics.flush()  # the workbench plots a live run from this file
        if self.events_jsonl:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()
        elif self.live is not None:
            self.live.update(event)
        elif not self.quiet and event["event"] != "batch":
            sys.stderr.write(plain_row(event) + "\n")
            sys.stderr.flush()

    def close(self) -> None:
        if self.live is not None:
            self.live.stop()
        self.metrics.close()


def _json_safe(event: dict) -> dict:
    """JSON has no NaN or Infinity: a diverged loss or perplexity is written as null."""
    return {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in event.items()}


def _json_default(obj):
    return str(obj)


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
