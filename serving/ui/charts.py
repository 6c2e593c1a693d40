"""Loss curves drawn on the server as SVG, by hand: no JavaScript chart library, nothing fetched from a CDN, so
the dashboard renders the same on an air-gapped host.

    svg = line_chart([Line("workspace: train loss", [(1, 2.5), (2, 2.0)])])   # inline in the page
    svg = line_chart(lines, standalone=True)                                  # a .svg file of its own

Why not matplotlib: its SVG styles every element with `style` attributes and a `<style>` block, which the pages'
Content-Security-Policy (style-src 'self') refuses inline; here every colour and dash is a presentation attribute,
so the chart can sit in the page itself. Every series has its own colour, eval curves are dashed, and a legend
names each line. All text is escaped here: the page inserts the SVG as is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape

# tab10 (what matplotlib used), then six darker ones: 16 distinct colours = MAX_COMPARED (8) x train/eval.
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd")
EVAL_DASH = "7 4"
WIDTH, PLOT_HEIGHT = 720, 250
LEFT, RIGHT, TOP, AXIS_SPACE = 56, 16, 12, 40   # room for the y labels, the x labels and the x axis title
LEGEND_ROW, LEGEND_CHARS = 18, 52
MARKERS_UP_TO = 12  # points of a short series are drawn as dots too (a 2-point line hides how many there are)
FONT = 'font-family="system-ui, sans-serif" font-size="11"'


@dataclass
class Line:
    label: str
    points: list[tuple[float, float]]
    dashed: bool = False


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About `count` round tick values (1, 2, 2.5 or 5 x 10^k apart) from at or below low to at or above high."""
    if not math.isfinite(low) or not math.isfinite(high):
        return [0.0, 1.0]
    if high <= low:
        low, high = low - 0.5, high + 0.5
    raw = (high - low) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw * (1 - 1e-9))
    first = math.floor(low / step + 1e-9) * step
    steps = math.ceil((high - first) / step - 1e-9)
    return [round(first + i * step, 10) for i in range(steps + 1)]


def _label(value: float) -> str:
    return f"{value:.6g}"


SERIES = ("train loss", "eval loss")


def loss_lines(curves: dict[str, dict[str, list[tuple[float, float]]]], prefix: str | None = "") -> list[Line]:
    """experiments.loss_curves' {experiment: {series: points}} as lines, keeping only the series named
    `prefix` + "train loss"/"eval loss" (prefix "<domain> ": a domain's; "": the single-model layout's); with
    prefix None every series, under its full name."""
    lines = []
    for label, series in curves.items():
        for name, points in series.items():
            if prefix is None:
                short = name
            elif name.startswith(prefix) and name[len(prefix):] in SERIES:
                short = name[len(prefix):]
            else:
                continue
            if points:
                lines.append(Line(f"{label}: {short}", points, dashed=short.endswith("eval loss")))
    return lines


def line_chart(lines: list[Line], title: str = "loss per step", y_label: str = "loss", x_label: str = "step",
               empty: str = "no training curves (run the train stage)", standalone: bool = False) -> str:
    """An SVG line chart: one colour per line (eval dashed), gridlines at round values, a legend below."""
    columns = 2 if len(lines) > 4 else 1
    legend_rows = math.ceil(len(lines) / columns)
    height = TOP + PLOT_HEIGHT + AXIS_SPACE + legend_rows * LEGEND_ROW + 6
    right, bottom = WIDTH - RIGHT, TOP + PLOT_HEIGHT
    out = [f'<svg class="chart" viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" height="{height}" role="img"'
           + (' xmlns="http://www.w3.org/2000/svg"' if standalone else "") + f' {FONT}>',
           f"<title>{escape(title)}</title>",
           f'<rect x="0" y="0" width="{WIDTH}" height="{height}" fill="#ffffff"/>']
    points = [p for line in lines for p in line.points]
    if not points:
        out.append(f'<text x="{WIDTH / 2}" y="{TOP + PLOT_HEIGHT / 2}" text-anchor="middle" fill="#667085">'
                   f"{escape(empty)}</text></svg>")
        return "\n".join(out)
    x_ticks = nice_ticks(min(p[0] for p in points), max(p[0] for p in points))
    y_ticks = nice_ticks(min(p[1] for p in points), max(p[1] for p in points))
    x0, x1, y0, y1 = x_ticks[0], x_ticks[-1], y_ticks[0], y_ticks[-1]

    def sx(x: float) -> float:
        return round(LEFT + (x - x0) / ((x1 - x0) or 1) * (right - LEFT), 2)

    def sy(y: float) -> float:
        return round(bottom - (y - y0) / ((y1 - y0) or 1) * (bottom - TOP), 2)

    out.append('<g class="grid" stroke="#e4e7ec" stroke-width="1">')
    out += [f'<line x1="{LEFT}" x2="{right}" y1="{sy(t)}" y2="{sy(t)}"/>' for t in y_ticks]
    out += [f'<line x1="{sx(t)}" x2="{sx(t)}" y1="{TOP}" y2="{bottom}"/>' for t in x_ticks]
    out.append("</g>")
    out.append(f'<g class="axes" fill="#344054"><rect x="{LEFT}" y="{TOP}" width="{right - LEFT}" '
               f'height="{PLOT_HEIGHT}" fill="none" stroke="#98a2b3"/>')
    out += [f'<text x="{LEFT - 6}" y="{sy(t) + 4}" text-anchor="end">{_label(t)}</text>' for t in y_ticks]
    out += [f'<text x="{sx(t)}" y="{bottom + 16}" text-anchor="middle">{_label(t)}</text>' for t in x_ticks]
    out.append(f'<text x="{(LEFT + right) / 2}" y="{bottom + 32}" text-anchor="middle">{escape(x_label)}</text>')
    out.append(f'<text transform="translate(14 {(TOP + bottom) / 2}) rotate(-90)" text-anchor="middle">'
               f"{escape(y_label)}</text></g>")
    for i, line in enumerate(lines):
        colour, dash = PALETTE[i % len(PALETTE)], (f' stroke-dasharray="{EVAL_DASH}"' if line.dashed else "")
        path = " ".join(f"{'M' if j == 0 else 'L'}{sx(x)},{sy(y)}" for j, (x, y) in enumerate(line.points))
        out.append(f'<g class="series" data-label="{escape(line.label)}"><title>{escape(line.label)}</title>')
        out.append(f'<path class="line" d="{path}" fill="none" stroke="{colour}" stroke-width="2"{dash}/>')
        if len(line.points) <= MARKERS_UP_TO:
            out += [f'<circle cx="{sx(x)}" cy="{sy(y)}" r="3" fill="{colour}"/>' for x, y in line.points]
        out.append("</g>")
    out.append(_legend(lines, columns, bottom + AXIS_SPACE))
    out.append("</svg>")
    return "\n".join(out)


def _legend(lines: list[Line], columns: int, top: float) -> str:
    """A sample of each line's stroke (colour and dash) beside its label; long labels are cut (full in title)."""
    column_width = (WIDTH - LEFT) / columns
    out = ['<g class="legend">']
    for i, line in enumerate(lines):
        x = LEFT + (i % columns) * column_width
        y = top + (i // columns) * LEGEND_ROW
        colour, dash = PALETTE[i % len(PALETTE)], (f' stroke-dasharray="{EVAL_DASH}"' if line.dashed else "")
        text = line.label if len(line.label) <= LEGEND_CHARS else line.label[:LEGEND_CHARS - 1] + "…"
        out.append(f'<g class="legend-item" data-label="{escape(line.label)}"><title>{escape(line.label)}</title>'
                   f'<line x1="{x}" x2="{x + 28}" y1="{y}" y2="{y}" stroke="{colour}" stroke-width="2"{dash}/>'
                   f'<text x="{x + 34}" y="{y + 4}" fill="#1d2330">{escape(text)}</text></g>')
    out.append("</g>")
    return "".join(out)
