"""A run's log, `<run>/metrics.jsonl`: one JSON event a line, appended as training goes (DESIGN.md §6).

Read by the experiments and the workbench's curves, trimmed by `core.train --resume`. A line cut short by a
kill is skipped when reading and dropped when trimming.
"""

from __future__ import annotations

import json
from pathlib import Path


def read_events(run_dir: Path) -> list[dict]:
    """metrics.jsonl's events; a line cut short by a kill is skipped."""
    events = []
    try:
        with open(Path(run_dir) / "metrics.jsonl", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                if isinstance(event, dict) and "event" in event:
                    events.append(event)
    except OSError:
        return []
    return events


def trim_metrics(path: Path, step: int) -> None:
    """Drop the events after `step` from a run's log before resuming from a checkpoint at `step`.

    A run killed outright (SIGKILL, power loss) has logged steps its last checkpoint does not hold; they
    run again after the resume, and each step must appear once in the log and in the workbench's curves.
    """
    if not path.exists():
        return
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
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
