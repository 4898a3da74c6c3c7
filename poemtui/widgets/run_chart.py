"""A training run's curves: training loss per batch (left axis) and dev perplexity per evaluation (right)."""

from __future__ import annotations

from textual_plotext import PlotextPlot

MAX_POINTS = 400  # a terminal is a few hundred cells wide: more points only cost time


def thin(points: list[tuple[float, float]], limit: int = MAX_POINTS) -> list[tuple[float, float]]:
    """At most `limit` points, each the mean of a window (keeps the curve's shape, drops the noise)."""
    if len(points) <= limit:
        return points
    size = len(points) / limit
    out = []
    for i in range(limit):
        window = points[int(i * size) : max(int((i + 1) * size), int(i * size) + 1)]
        out.append((window[-1][0], sum(y for _, y in window) / len(window)))
    return out


class RunChart(PlotextPlot):
    """Plots `losses` [(step, loss)] and `evals` [eval events]; says so when there is nothing yet."""

    DEFAULT_CSS = """
    RunChart { height: 1fr; min-height: 6; }
    """

    def __init__(self, *, empty_text: str = "the curves appear after the first batches", **kwargs):
        super().__init__(**kwargs)
        self.empty_text = empty_text
        self._shown: tuple | None = None
        self.show([], [])

    def show(self, losses: list[tuple[int, float]], evals: list[dict]) -> None:
        key = (len(losses), losses[-1] if losses else None, len(evals))
        if key == self._shown:
            return
        self._shown = key
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        if not losses and not evals:
            plt.title(self.empty_text)
            self.refresh()
            return
        plt.xlabel("step")
        if losses:
            xs, ys = zip(*thin(losses), strict=True)
            plt.plot(list(xs), list(ys), label="train loss", marker="braille", color="cyan")
        dev = [(e["step"], e["dev_ppl"]) for e in evals if isinstance(e.get("dev_ppl"), int | float)]
        if dev:
            xs, ys = zip(*dev, strict=True)
            plt.plot(list(xs), list(ys), label="dev perplexity", yside="right", marker="dot", color="orange")
        self.refresh()
