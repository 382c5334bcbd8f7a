"""`ganforge report RUN`: one self-contained HTML page about a run (images embedded).

Curves are drawn by matplotlib (the optional extra `ganforge[report]`) from the run's log; sample
grids are the run's own PNG files, read through a read-only RunDir. The page references nothing
outside itself, so it opens offline in any browser and can be mailed around.
"""

from __future__ import annotations

import base64
import html
import io
import re
from pathlib import Path
from typing import Any

from ganforge.errors import GanforgeError
from ganforge.logrecord import (
    EVAL,
    EVAL_EXTRACTOR,
    EVAL_NUM_SAMPLES,
    EVAL_REFERENCE,
    IMG_PER_S,
    LEARNING_RATES,
    STEP,
    is_eval_record,
    is_training_record,
    loss_keys,
)
from ganforge.run import STEP_PREFIX, RunDir
from ganforge.runinfo import read_log, summarize


def _matplotlib() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise GanforgeError("ganforge report draws its plots with matplotlib: pip install 'ganforge[report]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig: Any) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode()


def _plot(plt: Any, series: dict[str, tuple[list[int], list[float]]], title: str, ylabel: str,
          log_y: bool = False) -> str | None:
    """One figure with a line per series; None when there is nothing to draw."""
    series = {k: v for k, v in series.items() if v[0]}
    if not series:
        return None
    fig, ax = plt.subplots(figsize=(7.5, 3.4))
    for name, (steps, values) in series.items():
        ax.plot(steps, values, label=name, linewidth=1.3)
    ax.set_title(title)
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    if log_y:
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    data = _png(fig)
    plt.close(fig)
    return data


def _series(records: list[dict[str, Any]], keys: list[str]) -> dict[str, tuple[list[int], list[float]]]:
    out: dict[str, tuple[list[int], list[float]]] = {}
    for key in keys:
        pts = [(r[STEP], r[key]) for r in records if isinstance(r.get(key), (int, float))]
        out[key] = ([p[0] for p in pts], [float(p[1]) for p in pts])
    return out


def _heading(title: str) -> str:
    """A section's heading, with an id to link to (`learning-rates`)."""
    return f'<h2 id="{title.lower().replace(" ", "-")}">{html.escape(title)}</h2>'


def _img(data: str, alt: str, css: str = "") -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}" style="{css}">'


def _file_b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def build_report(run: Path) -> str:
    """The HTML page of a run folder."""
    folder = RunDir(run, read_only=True)
    run = folder.path
    if not run.is_dir():
        raise GanforgeError(f"no run folder at {run}")
    records = read_log(run)
    if not records and not folder.samples.is_dir():
        raise GanforgeError(f"{run} has no {folder.log_file.name} and no samples: is it a ganforge run folder?")
    plt = _matplotlib()
    summary = summarize(run)
    train_records = [r for r in records if is_training_record(r)]
    eval_records = [r for r in records if is_eval_record(r)]
    losses = [k for k in loss_keys(train_records) if isinstance(train_records[-1].get(k), (int, float))]

    parts: list[str] = []
    add = parts.append
    add(f"<h1>ganforge run: {html.escape(summary.name)}</h1>")
    add(_heading("Summary") + "<table>")
    rows = [("folder", str(run.resolve())), ("data", summary.data), ("generator", summary.generator),
            ("step", f"{summary.step}" + (f" of {summary.steps}" if summary.steps else ""))]
    rows += [(k, f"{v:.4f}") for k, v in summary.losses.items()]
    if summary.best:
        rows.append(("best checkpoint", f"{summary.best.figure} = {summary.best.value:.6g} at step "
                                        f"{summary.best.step}"))
    if train_records and IMG_PER_S in train_records[-1]:
        rows.append(("speed (last log step)", f"{train_records[-1][IMG_PER_S]:.0f} images/s"))
    add("".join(f"<tr><th>{html.escape(a)}</th><td>{html.escape(b)}</td></tr>" for a, b in rows) + "</table>")

    add(_heading("Losses"))
    curves = _plot(plt, _series(train_records, losses), "losses and regularizers", "value")
    add(_img(curves, "loss curves") if curves else "<p>No log records yet.</p>")

    add(_heading("Learning rates"))
    lrs = _plot(plt, _series(train_records, list(LEARNING_RATES)), "learning rates", "lr")
    add(_img(lrs, "learning-rate curves") if lrs else "<p>No log records yet.</p>")

    add(_heading("Metrics"))
    if eval_records:
        figures = list(dict.fromkeys(k for r in eval_records for k in r[EVAL]))
        flat = [{STEP: r[STEP], **r[EVAL]} for r in eval_records]
        for figure in figures:
            if figure.endswith("_std") or "/" in figure:  # spreads and per-class figures (ifid/k): no curve
                continue
            data = _plot(plt, _series(flat, [figure]), figure, figure)
            if data:
                add(_img(data, f"{figure} curve"))
        last = eval_records[-1]
        add("<table><tr><th>step</th>" + "".join(f"<th>{html.escape(f)}</th>" for f in figures) + "</tr>")
        for r in eval_records[-10:]:
            add(f"<tr><td>{r[STEP]}</td>" + "".join(
                f"<td>{r[EVAL].get(f, float('nan')):.5g}</td>" for f in figures) + "</tr>")
        add("</table>")
        reference = last.get(EVAL_REFERENCE, {})
        add(f"<p class=note>Computed on {last.get(EVAL_NUM_SAMPLES)} generated samples with "
            f"{html.escape(str(last.get(EVAL_EXTRACTOR)))}; reference: "
            f"{html.escape(str(reference.get('num_samples', '')))} real samples of "
            f"{html.escape(str(reference.get('data', {}).get('kind', '?')))}.</p>")
    else:
        add("<p>No evaluations in this run (set <code>eval.every</code>, or run <code>ganforge eval</code>).</p>")

    samples = folder.sample_files()
    add(_heading("Latest samples"))
    if samples:
        add(_img(_file_b64(samples[-1]), f"samples at {samples[-1].stem}",
                 "image-rendering: pixelated; width: min(100%, 640px)"))
        add(f"<p class=note>{html.escape(samples[-1].name)}</p>")
    else:
        add("<p>No sample grids yet.</p>")

    add(_heading("Samples over training") + "<div class=strip>")
    picks = samples if len(samples) <= 8 else [samples[round(i * (len(samples) - 1) / 7)] for i in range(8)]
    for path in picks:
        step = re.sub(rf"^{STEP_PREFIX}0*", "", path.stem) or "0"
        add(f"<figure>{_img(_file_b64(path), path.stem, 'image-rendering: pixelated; width: 150px')}"
            f"<figcaption>step {step}</figcaption></figure>")
    add("</div>")

    add(_heading("Config"))
    config = folder.config_file
    text = config.read_text(errors="replace") if config.is_file() else None  # a damaged file still shows
    add(f"<pre>{html.escape(text)}</pre>" if text is not None else f"<p>No {config.name}.</p>")

    style = ("body{font-family:system-ui,sans-serif;max-width:980px;margin:2em auto;padding:0 1em;color:#222}"
             "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 8px;"
             "text-align:left;font-size:14px}pre{background:#f6f6f6;padding:1em;overflow:auto;font-size:13px}"
             ".strip{display:flex;flex-wrap:wrap;gap:8px}figure{margin:0;text-align:center;font-size:12px}"
             ".note{color:#666;font-size:13px}img{max-width:100%}")
    return (f"<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>ganforge report: "
            f"{html.escape(summary.name)}</title><style>{style}</style></head><body>{''.join(parts)}</body></html>\n")
