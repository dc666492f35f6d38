"""What the demo shows: the results table (text and HTML), the loss curves as a PNG, and the HTML report.

The scores are read from the `eval.json` that `infer.py --eval` writes, under the names the official tools use;
every number is shown on a 0-100 scale so that the columns compare (DAVIS J&F 0.6 shows as 60.0).
"""
from __future__ import annotations

import html
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw

from tarvis_fast.formats.atomic import atomic_open


@dataclass(frozen=True)
class Metric:
    label: str          # the table's row name
    task: str           # vis, vps, vos or pet: whose eval.json holds it
    keys: tuple[str, ...]  # the path to the value in that eval.json
    scale: float        # multiplies the official value onto 0-100


METRICS = (
    Metric("VIS mAP (DEMO_VIS)", "vis", ("AP",), 100.0),
    Metric("VPS VPQ (DEMO_VPS)", "vps", ("vpq_all",), 1.0),
    Metric("VPS STQ (DEMO_VPS)", "vps", ("STQ", "STQ"), 100.0),
    Metric("VOS J&F (DEMO_VOS)", "vos", ("J&F-Mean",), 100.0),
    Metric("PET HOTA (DEMO_PET)", "pet", ("HOTA", "all"), 1.0),
)
# Loss curves: the total and one mask loss per task (the names the trainer logs; a task's loss appears in the
# display intervals that ran it).
CURVES = (("TotalL", "total"), ("ISegDiceL", "VIS mask dice"), ("PSegIDiceL", "VPS thing mask dice"),
          ("PSegSSegCeL", "VPS semantic CE"), ("VSegDiceL", "VOS/PET mask dice"))
_COLOURS = ((20, 20, 20), (214, 39, 40), (31, 119, 180), (148, 103, 189), (44, 160, 44))
_LOG_LINE = re.compile(r"\bit (\d+)/\d+\s+(.*?)\s+lr ")


def score(stats: Mapping, metric: Metric) -> float:
    value = stats
    for key in metric.keys:
        value = value[key]
    return float(value) * metric.scale


def scores(eval_files: Mapping[str, Path]) -> dict[str, float]:
    """Metric label -> score (0-100) from each task's eval.json (task -> path)."""
    loaded = {task: json.loads(path.read_text()) for task, path in eval_files.items()}
    return {metric.label: score(loaded[metric.task], metric) for metric in METRICS}


def table_rows(trained: Mapping[str, float], untrained: Mapping[str, float]) -> list[tuple[str, str, str, str]]:
    rows = []
    for metric in METRICS:
        after, before = trained[metric.label], untrained[metric.label]
        ratio = "inf" if before == 0 and after > 0 else "-" if before == 0 else f"{after / before:.1f}x"
        rows.append((metric.label, f"{after:.1f}", f"{before:.1f}", ratio))
    return rows


TABLE_HEADER = ("metric (0-100)", "trained", "untrained", "trained/untrained")


def format_table(rows: Sequence[Sequence[str]]) -> str:
    """A plain-text table (also valid Markdown)."""
    lines = [TABLE_HEADER, *rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(TABLE_HEADER))]
    text = ["| " + " | ".join(cell.ljust(w) for cell, w in zip(line, widths)) + " |" for line in lines]
    text.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(text)


# ============================================================================================== loss curves

def read_losses(out_log: Path) -> dict[str, list[tuple[int, float]]]:
    """Loss name -> [(iteration, mean over the display interval)] from a run's `logs/out.log`; a resumed run's
    later lines replace the earlier ones of the same iteration."""
    by_iteration: dict[int, dict[str, float]] = {}
    for line in out_log.read_text(encoding="utf-8").splitlines():
        match = _LOG_LINE.search(line)
        if match:
            pairs = match.group(2).split()
            by_iteration[int(match.group(1))] = {name: float(value) for name, value in zip(pairs[::2], pairs[1::2])}
    curves: dict[str, list[tuple[int, float]]] = {}
    for iteration in sorted(by_iteration):
        for name, value in by_iteration[iteration].items():
            curves.setdefault(name, []).append((iteration, value))
    return curves


def plot_losses(curves: Mapping[str, Sequence[tuple[int, float]]], path: Path, size: tuple[int, int] = (760, 420)) -> Path:
    """The CURVES on a log-scale y axis, drawn with PIL (the project has no plotting library), as a PNG."""
    width, height = size
    left, right, top, bottom = 60, 190, 20, 40
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    shown = [(name, label, colour, [(i, v) for i, v in curves.get(name, []) if v > 0])
             for (name, label), colour in zip(CURVES, _COLOURS)]
    points = [p for *_, series in shown for p in series]
    draw.rectangle((left, top, width - right, height - bottom), outline="black")
    if points:
        x_max = max(i for i, _ in points) or 1
        y_lo, y_hi = math.floor(math.log10(min(v for _, v in points))), math.ceil(math.log10(max(v for _, v in points)))
        y_hi = max(y_hi, y_lo + 1)

        def xy(iteration: int, value: float) -> tuple[float, float]:
            x = left + (width - right - left) * iteration / x_max
            y = height - bottom - (height - bottom - top) * (math.log10(value) - y_lo) / (y_hi - y_lo)
            return x, y

        for power in range(y_lo, y_hi + 1):
            _, y = xy(0, 10.0**power)
            draw.line((left - 4, y, left, y), fill="black")
            draw.text((6, y - 6), f"1e{power}", fill="black")
        for k in range(5):
            iteration = round(x_max * k / 4)
            x, _ = xy(iteration, 10.0**y_lo)
            draw.line((x, height - bottom, x, height - bottom + 4), fill="black")
            draw.text((x - 10, height - bottom + 8), str(iteration), fill="black")
        draw.text(((width - right) // 2, height - 16), "iteration", fill="black")
        for index, (_, label, colour, series) in enumerate(shown):
            if len(series) > 1:
                draw.line([xy(i, v) for i, v in series], fill=colour, width=2)
            for x, y in (xy(i, v) for i, v in series[-1:]):  # the last value as a dot: visible even when alone
                draw.ellipse((x - 3, y - 3, x + 3, y + 3), fill=colour)
            y = top + 10 + 18 * index
            draw.line((width - right + 12, y, width - right + 32, y), fill=colour, width=3)
            draw.text((width - right + 38, y - 6), label, fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path, "wb") as handle:
        image.save(handle, format="PNG")
    return path


# ============================================================================================== HTML

def write_overview(path: Path, videos: Mapping[str, Path], frames: int = 4, scale: int = 3) -> Path:
    """One picture of the trained model at work: per task (a row, labelled), `frames` evenly spaced frames of its
    overlay video, each enlarged `scale` times (the demo's frames are small). What the README shows."""
    from tarvis_fast.inference.video import open_frames

    rows = []
    for task, video in videos.items():
        clip = list(open_frames(video).frames)
        picked = [clip[round(i * (len(clip) - 1) / max(frames - 1, 1))] for i in range(frames)]
        tiles = [Image.fromarray(f).resize((f.shape[1] * scale, f.shape[0] * scale), Image.NEAREST) for f in picked]
        rows.append((task, tiles))
    label_w, gap = 150, 4
    tile_w, tile_h = rows[0][1][0].size
    image = Image.new("RGB", (label_w + frames * (tile_w + gap), len(rows) * (tile_h + gap) - gap), "white")
    draw = ImageDraw.Draw(image)
    for r, (task, tiles) in enumerate(rows):
        y = r * (tile_h + gap)
        draw.text((6, y + tile_h // 2 - 6), task, fill="black")
        for c, tile in enumerate(tiles):
            image.paste(tile, (label_w + c * (tile_w + gap), y))
    with atomic_open(path, "wb") as handle:
        image.save(handle, format="PNG", optimize=True)
    return path


def write_html(path: Path, table: Sequence[Sequence[str]], loss_png: str, videos: Mapping[str, str],
               notes: Sequence[str]) -> Path:
    """The report: the table, the loss plot and one overlay video per task (paths relative to the report)."""
    head = "".join(f"<th>{html.escape(cell)}</th>" for cell in TABLE_HEADER)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>" for row in table)
    clips = "".join(
        f"<figure><video src='{html.escape(src)}' controls loop autoplay muted width='384'></video>"
        f"<figcaption>{html.escape(task)}</figcaption></figure>" for task, src in videos.items())
    items = "".join(f"<li>{html.escape(note)}</li>" for note in notes)
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>tarvis-fast demo</title>
<style>body{{font-family:sans-serif;max-width:60em;margin:2em auto}} table{{border-collapse:collapse}}
td,th{{border:1px solid #999;padding:.3em .8em;text-align:right}} td:first-child{{text-align:left}}
figure{{display:inline-block;margin:.5em}}</style></head><body>
<h1>tarvis-fast demo</h1>
<p>One TarViS model trained on procedural videos for four tasks, scored on their validation set by the built-in
metrics of the benchmarks whose formats the videos are written in, beside the same model before training.</p>
<table><tr>{head}</tr>{body}</table>
<h2>Training losses</h2><img src="{html.escape(loss_png)}" alt="loss curves">
<h2>The trained model on one validation video per task</h2>{clips}
<p><img src="overview.png" alt="frames of each overlay video"></p>
<h2>How this was made</h2><ul>{items}</ul>
</body></html>
"""
    with atomic_open(path, "w") as handle:
        handle.write(page)
    return path
