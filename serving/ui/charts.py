"""Charts drawn on the server as SVG with matplotlib: no JavaScript chart library, nothing fetched from a CDN,
so the dashboard renders the same on an air-gapped host. Text is drawn as paths (no font files needed)."""

from __future__ import annotations

import io
import threading

# pyplot keeps global state; one chart at a time (the dashboard draws rarely, on request).
_LOCK = threading.Lock()


def loss_curves_svg(curves: dict[str, dict[str, list[tuple[float, float]]]], width_in: float = 7.5,
                    height_in: float = 3.2) -> str:
    """One axes: every (experiment, series) as a line; train solid, eval dashed."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    with _LOCK:
        figure = Figure(figsize=(width_in, height_in), dpi=96)
        axes = figure.add_subplot()
        colours = matplotlib.color_sequences["tab10"]
        for i, (label, series) in enumerate(curves.items()):
            for name, points in series.items():
                if not points:
                    continue
                steps, values = zip(*points, strict=True)
                axes.plot(steps, values, color=colours[i % len(colours)], marker="o" if len(points) < 3 else None,
                          linestyle="--" if name.startswith("eval") else "-", label=f"{label}: {name}")
        if not axes.lines:
            axes.text(0.5, 0.5, "no training curves (run the train stage)", ha="center", va="center",
                      transform=axes.transAxes)
        else:
            axes.legend(fontsize=8)
        axes.set_xlabel("step")
        axes.set_ylabel("loss")
        axes.grid(alpha=0.3)
        figure.tight_layout()
        buffer = io.StringIO()
        figure.savefig(buffer, format="svg", metadata={"Date": None})  # no timestamp: same curves, same bytes
    return buffer.getvalue()
