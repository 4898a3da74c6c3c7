"""A run's log, `<run>/metrics.jsonl`: one JSON event a line, appended as training goes (DESIGN.md §6).

Read by the experiments and the workbench's curves, trimmed by `core.train --resume`. A line cut short by a
kill is skipped when reading and dropped when trimming.
"""

from __future__ import annotations

import io
import json
from pathlib import Path


def read_events(run_dir: Path) -> list[dict]:
    """metrics.jsonl's events; a line cut short by a kill is skipped."""
    from core.errors import PoemError
    from core.paths import open_input

    events = []
    try:
        with open_input(Path(run_dir) / "metrics.jsonl", "log") as raw:
            fh = io.TextIOWrapper(raw, encoding="utf-8", errors="replace")
            for line in fh:
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                if isinstance(event, dict) and "event" in event:
                    events.append(event)
    except (OSError, PoemError):
        return []
    return events


def trim_metrics(path: Path, step: int) -> None:
    """Drop the events after `step` from a run's log before resuming from a checkpoint at `step`.

    A run killed outright (SIGKILL, power loss) has logged steps its last checkpoint does not hold; they
    run again after the resume, and each step must appear once in the log and in the workbench's curves.
    """
    if not path.exists():
        return
    from core.paths import read_input

    data = read_input(path, "log")  # a FIFO or a device of that name: one line, never a blocked resume
    lines = data.decode("utf-8", errors="replace").splitlines(keepends=True)
    kept = []
    for line in lines:
        if not line.endswith("\n"):
            continue  # torn by the kill: the next event would be glued to it
        try:
            after = json.loads(line).get("step", 0) > step
        except (ValueError, AttributeError, TypeError):
            after = False  # not one of our events: kept as it is
        if not after:
            kept.append(line)
    if kept != lines:
        from core.runs.atomic import atomic_write_bytes

        atomic_write_bytes(path, "".join(kept).encode("utf-8"))
