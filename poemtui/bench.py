"""Benchmark: is training inside the workbench as fast as the headless CLI? `python -m poemtui.bench`.

The same `core.train` runs in turns, headless and under the workbench (driven by Textual's Pilot).

Per run, the same preset and number of steps for both:
- wall-clock tokens/s (tokens_seen / elapsed_s of the `done` event): what a user feels;
- CPU seconds of the training process per 1,000 tokens (the kernel's accounting of waited-for children);
- for the TUI, the CPU share of the UI process while the child trains: the most it can take from training;
  and its event loop's lag: how late a 10 ms sleep wakes up while batch events stream in (p95 and max).
On a quiet machine the wall-clock ratio is the figure to report. On a busy one, wall-clock speed swings
with other processes' load; the UI's own CPU share bounds the slowdown it can cause whatever the load.
A benchmark, not a test: it prints figures, it asserts nothing about speed (DESIGN: no timed unit tests).
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from core.runs.metrics import read_events
from poemtui.app import PoemApp
from poemtui.state.train_options import preset_values, train_options

REPO = Path(__file__).resolve().parents[1]
STEPS = 27  # three epochs of the quick preset (with their three evaluations)


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def done_event(run_dir: Path) -> dict:
    return next(e for e in read_events(run_dir) if e["event"] == "done")


def run_cli(run_dir: Path, steps: int = STEPS) -> tuple[dict, float, None, list[float]]:
    before = children_cpu_s()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "core.train",
            "--preset",
            "quick",
            "--max-steps",
            str(steps),
            "--run-dir",
            str(run_dir),
            "--quiet",
        ],
        cwd=REPO,
        check=True,
        capture_output=True,
        timeout=900,
    )
    return done_event(run_dir), children_cpu_s() - before, None, []


def run_tui(root: Path, steps: int = STEPS) -> tuple[dict, float, float, list[float]]:
    ui_share, lags = [], []

    async def drive() -> None:
        app = PoemApp(checkpoints_dir=root, python=sys.executable, welcome=False)
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.pause()
            app.start_training(
                {**train_options(preset_values("quick"), preset="quick"), "max_steps": steps}, run_name="tui"
            )
            state = app.run_state
            while state.step < 1 and state.exit_code is None:
                await pilot.pause(0.1)
            cpu0, wall0 = time.process_time(), time.monotonic()
            while state.exit_code is None:
                if time.monotonic() - wall0 > 900:
                    raise RuntimeError("the run in the workbench did not end in 15 minutes")
                tick = time.perf_counter()
                await asyncio.sleep(0.01)
                lags.append(time.perf_counter() - tick - 0.01)
            ui_share.append((time.process_time() - cpu0) / (time.monotonic() - wall0))
            if state.status != "max_steps":
                raise RuntimeError(f"the run in the workbench ended {state.status}: {state.failure}")

    before = children_cpu_s()
    asyncio.run(drive())
    return done_event(root / "tui"), children_cpu_s() - before, ui_share[0], lags


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m poemtui.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2, help="CLI/TUI pairs, interleaved (default: 2)")
    parser.add_argument(
        "--steps", type=int, default=STEPS, help=f"training steps per run (default: {STEPS}, three epochs)"
    )
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.steps < 1:
        parser.error("--rounds and --steps take a whole number >= 1")
    with tempfile.TemporaryDirectory(prefix="poemtui-bench-") as tmp:
        return report(Path(tmp), args.rounds, args.steps)


def report(tmp_path: Path, rounds: int, steps: int = STEPS) -> int:
    rows, lags = [], []
    for i in range(rounds):  # interleaved, so drifts of the machine's load hit both alike
        for kind in ("cli", "tui"):
            run = run_cli if kind == "cli" else run_tui
            done, cpu, ui, lag = run(tmp_path / f"{kind}{i}", steps)
            lags += lag
            rows.append((kind, done["tokens_seen"] / done["elapsed_s"], cpu / done["tokens_seen"] * 1000, ui))
    wall = {k: statistics.mean(r[1] for r in rows if r[0] == k) for k in ("cli", "tui")}
    cpu = {k: statistics.mean(r[2] for r in rows if r[0] == k) for k in ("cli", "tui")}
    ui_share = max(r[3] for r in rows if r[0] == "tui")
    print(f"\n{'run':4} {'tokens/s':>9} {'cpu s/1k tok':>13} {'UI cpu':>7}")
    for kind, speed, cost, ui in rows:
        print(f"{kind:4} {speed:9.0f} {cost:13.3f} {'' if ui is None else f'{ui:.1%}':>7}")
    print(
        f"TUI/CLI wall-clock tokens/s: {wall['tui'] / wall['cli']:.3f}; "
        f"CLI/TUI CPU per token: {cpu['cli'] / cpu['tui']:.3f}; UI process: {ui_share:.1%} of a core"
    )
    lags.sort()
    print(
        f"UI event-loop lag while training: p95 {lags[int(0.95 * len(lags))] * 1000:.1f} ms, "
        f"max {lags[-1] * 1000:.0f} ms ({len(lags)} ticks of 10 ms)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
