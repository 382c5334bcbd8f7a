"""The model card of an exported generator (README.md of a model folder): what it was trained on,
for how long, how it scores and with what protocol, the config, the versions, and licence
placeholders for the author to fill in. Markdown with a YAML header, as model hubs read it."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ganforge.logrecord import (
    EVAL,
    EVAL_EXTRACTOR,
    EVAL_NUM_SAMPLES,
    EVAL_REFERENCE,
    IMAGES_SEEN,
    STEP,
    is_eval_record,
    is_training_record,
)


@dataclass
class Evaluation:
    """Figures of one evaluation and the protocol they were computed with."""

    step: int
    figures: dict[str, float]
    num_samples: int | None
    extractor: str | None
    reference: dict[str, Any]
    source: str  # where the figures were read (log.jsonl or an eval JSON)
    network: str = "G_ema"
    seed: int | None = None
    truncation: float | None = None
    settings: dict[str, Any] = field(default_factory=dict)  # resize, protocol... (eval's options)


@dataclass
class CardFacts:
    """Everything the card states, gathered from the checkpoint and its run folder."""

    name: str
    network: str  # G_ema or G
    step: int
    config: dict[str, Any]
    data_info: dict[str, Any]
    parameters: int
    latent_dim: int
    num_classes: int
    truncation_space: str  # "w" or "z"
    data_count: int | None = None
    images_seen: int | None = None
    evaluation: Evaluation | None = None
    sessions: list[dict[str, Any]] = field(default_factory=list)
    trained_with: dict[str, str] = field(default_factory=dict)
    exported_with: dict[str, str] = field(default_factory=dict)
    grid_caption: str = ""


def latest_evaluation(run: Path, step: int, config: dict[str, Any]) -> Evaluation | None:
    """The evaluation of the checkpoint at `step`: an eval JSON of `ganforge eval` for that step
    (RUN/eval/step-N.json), else the last evaluation during training at or before it (whose
    settings are the config's eval section)."""
    from ganforge.run import RunDir, read_log

    folder = RunDir(run, read_only=True)
    try:
        report = json.loads(folder.eval_file(step).read_text())
        if isinstance(report, dict) and isinstance(report.get("metrics"), dict):
            return Evaluation(step, report["metrics"], report.get("num_samples"), report.get("extractor"),
                              report.get("reference") or {}, str(folder.eval_file(step).relative_to(run)),
                              "G_ema" if report.get("ema", True) else "G", report.get("seed"),
                              report.get("truncation"), report.get("settings") or {})
    except (OSError, ValueError):
        pass
    records = [r for r in read_log(run) if is_eval_record(r) and r.get(STEP, 0) <= step]
    if not records:
        return None
    r = records[-1]
    train, evaluation = config.get("train", {}), config.get("eval", {})
    settings = {k: evaluation[k] for k in ("resize", "protocol", "kid_subset_size") if k in evaluation}
    return Evaluation(int(r[STEP]), r[EVAL], r.get(EVAL_NUM_SAMPLES), r.get(EVAL_EXTRACTOR),
                      r.get(EVAL_REFERENCE) or {}, "log.jsonl (during training)", seed=train.get("seed"),
                      settings=settings)


def images_seen(run: Path, step: int, config: dict[str, Any]) -> int:
    """Real images through D up to `step`: the log's count, else batch x D steps per G step x steps."""
    from ganforge.run import read_log

    seen = [r[IMAGES_SEEN] for r in read_log(run) if is_training_record(r) and r.get(STEP) == step
            and IMAGES_SEEN in r]
    if seen:
        return int(seen[-1])
    train = config.get("train", {})
    return int(step * train.get("batch_size", 0) * train.get("d_steps_per_g_step", 1))



def _file_names_only(text: str) -> str:
    """`text` with each file path in parentheses cut to its file name: an extractor's weights named by
    file, not by the folders of the machine that evaluated (a shared card should not show them)."""
    return re.sub(r"\(([^(),]*[/\\])([^/\\(),]+)(?=[,)])", r"(\2", text)

def _table(rows: list[tuple[str, Any]], header: tuple[str, str] = ("", "")) -> str:
    lines = [f"| {header[0]} | {header[1]} |", "| --- | --- |"]
    lines += [f"| {k} | {_cell(v)} |" for k, v in rows]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text.replace("|", "\\|").replace("\n", " ")


def _number(n: float | int | None) -> str:
    return "unknown" if n is None else f"{n:,}"


def _has_python_api() -> bool:
    """Whether this ganforge has `ganforge.load` (the card shows it only then)."""
    import ganforge

    return callable(getattr(ganforge, "load", None))


def render(facts: CardFacts) -> str:
    """The README.md text."""
    import yaml

    cfg = facts.config
    kind = cfg["generator"]["kind"]
    info = facts.data_info
    shape = info["shape"]
    is_image = len(shape) == 3
    data = cfg.get("data", {})
    conditional = facts.num_classes > 0
    pipeline = ("image-generation" if is_image else "other")
    tags = ["gan", "ganforge", kind, info["name"]] + (["conditional-image-generation"] if conditional and is_image
                                                     else [])
    header = {"library_name": "ganforge", "license": "other", "pipeline_tag": pipeline, "tags": tags}
    train = cfg.get("train", {})
    ema = train.get("ema", {})
    if is_image:
        resolution = f"{shape[1]}x{shape[2]} px, {shape[0]} channel{'s' if shape[0] != 1 else ''}"
        output = f"N x {shape[0]} x {shape[1]} x {shape[2]} images in [-1, 1]"
    else:
        resolution = f"{shape[0]}-dimensional points"
        output = f"N x {shape[0]} points, in the data's units"
    truncation = ("w-space, `--truncation psi` (0 = the average w, 1 = none)" if facts.truncation_space == "w" else
                  "in z: `--truncation t` draws z from the standard normal truncated to [-t, t], t in (0, 1] "
                  "(BigGAN's truncation trick)")
    title = f"{facts.name}: a {kind} generator trained on {info['name']}"
    parts = [
        "---\n" + yaml.safe_dump(header, sort_keys=False).strip()
        + "\n# license: replace `other` with the licence of these weights (see Licence below)\n---",
        f"# {title}",
        f"The {'moving average of the generator (G_ema)' if facts.network == 'G_ema' else 'generator (raw G)'} "
        f"of a ganforge run at step {facts.step:,}, exported as safetensors: the weights hold no code.",
    ]
    if is_image:
        parts += [f"![Samples of this generator]({'samples.png'})", f"*{facts.grid_caption}*"]
    else:
        parts += ["![Samples of this generator](samples.png)", f"*{facts.grid_caption}*"]
    parts += [
        "## Use",
        "```bash\npip install ganforge\nganforge sample . --seeds 0-35 --out samples   # seed0000.png ... seed0035.png"
        + ("  (add --class N)" if conditional else "") + "\n```",
        *([] if not _has_python_api() else [
            "```python\nimport ganforge\nmodel = ganforge.load(\".\")\nimages = model.generate(seeds=range(8)"
            + (", labels=0" if conditional else "") + ")  # N x C x H x W in [-1, 1]\n```"]),
        "The weights alone, without ganforge (the generator's state dict under its own names):",
        "```python\nfrom safetensors.torch import load_file\nstate = load_file(\"model.safetensors\")\n```",
        "## Model",
        _table([
            ("architecture", f"`{kind}`, {facts.parameters:,} parameters (config.json's `config.generator`)"),
            ("weights", f"{facts.network} at step {facts.step:,}"),
            ("input", f"z: N x {facts.latent_dim}, standard normal"
                      + (f"; labels: N class indices 0 to {facts.num_classes - 1}" if conditional else "")),
            ("per-seed z", "`numpy.random.RandomState(seed).randn(latent_dim)`, as StyleGAN2-ADA's generate.py"),
            ("output", output),
            ("truncation", truncation),
        ], ("model", "")),
        "## Training data",
        _table([
            ("kind", f"`{data.get('kind', info['name'])}`"),
            ("resolution", resolution),
            ("samples", _number(facts.data_count)),
            ("classes", (f"{info['num_classes']}" + (" (the generator is conditioned on them)" if conditional
                                                     else " (not used by the generator)"))
             if info["num_classes"] else "none (unlabelled)"),
            ("data config", "`" + json.dumps(data) + "`"),
        ], ("data", "")),
        "## Training",
        _table([
            ("length", f"{facts.step:,} generator steps, {_number(facts.images_seen)} real images through D"),
            ("batch", f"{train.get('batch_size')} real images per D step, {train.get('d_steps_per_g_step', 1)} "
                      "D step(s) per G step"),
            ("loss", f"`{cfg.get('loss', {}).get('kind')}`"),
            ("regularizers", ", ".join(f"`{r['kind']}`" for r in cfg.get("regularizers", [])) or "none"),
            ("optimizers", f"G `{cfg.get('optim', {}).get('g', {}).get('kind')}`, D "
                           f"`{cfg.get('optim', {}).get('d', {}).get('kind')}`"),
            ("EMA", f"decay {ema.get('decay')}, ramp-up {ema.get('rampup') or 'none'}"),
            ("seed", train.get("seed")),
            ("precision", train.get("precision")),
        ], ("training", "")),
    ]
    if facts.sessions:
        rows = []
        for s in facts.sessions:
            hardware = ", ".join(s.get("gpus") or []) or f"CPU ({s.get('cpu') or 'unknown'})"
            git = s.get("git") or {}
            commit = f"; config at git {git['commit'][:12]}{' (uncommitted changes)' if git.get('dirty') else ''}" \
                if git.get("commit") else ""
            rows.append((f"from step {s.get('step', 0):,}",
                         f"{hardware}; torch {s.get('torch')}, CUDA {s.get('cuda') or 'none'}, cuDNN "
                         f"{s.get('cudnn') or 'none'}; ganforge {s.get('ganforge')}; `{s.get('command')}`{commit}"))
        parts += ["Where it ran (RUN/environment.json):", _table(rows, ("session", "hardware, software, command"))]
    parts.append("## Evaluation")
    ev = facts.evaluation
    if ev is None:
        parts.append("No evaluation was recorded for this checkpoint. Score it with `ganforge eval RUN` "
                     "(FID, KID, IS, precision/recall...) and export again to list the figures here.")
    else:
        ref = ev.reference
        real = ref.get("num_samples")
        protocol = [
            ("step", f"{ev.step:,}" + (" (the exported weights)" if ev.step == facts.step else
                                       f" (the last evaluation before the exported step {facts.step:,})")),
            ("network", ev.network),
            ("generated samples", _number(ev.num_samples)),
            ("real samples (reference)", _number(real) if real is not None else "-"),
            ("reference data", "`" + json.dumps(ref.get("data", {})) + "`"),
            ("feature extractor", _file_names_only(ev.extractor) if ev.extractor else "-"),
            ("settings", "`" + json.dumps(ev.settings) + "`" if ev.settings else "-"),
            ("noise seed", ev.seed if ev.seed is not None else "-"),
            ("truncation", ev.truncation if ev.truncation is not None else "none"),
            ("read from", ev.source),
        ]
        figures = ["| metric | value |", "| --- | --- |"] + [f"| {k} | {v:.6g} |" if isinstance(v, (int, float))
                                                          else f"| {k} | {_cell(v)} |" for k, v in ev.figures.items()]
        parts += ["\n".join(figures), _table(protocol, ("protocol", ""))]
    parts += [
        "## Config",
        "The resolved config of the run (bases merged, defaults filled); `ganforge train` runs it as it is.",
        "```yaml\n" + yaml.safe_dump(cfg, sort_keys=False, default_flow_style=None, width=100).strip() + "\n```",
        "## Versions",
        _table([("trained with", ", ".join(f"{k} {v}" for k, v in facts.trained_with.items()) or "unknown"),
                ("exported with", ", ".join(f"{k} {v}" for k, v in facts.exported_with.items()))],
               ("versions", "")),
        "## Licence",
        "- **Weights**: TODO: the licence under which you share these weights (and set `license:` above).\n"
        "- **Training data**: TODO: the data set's licence and terms, and whether they allow sharing a model "
        "trained on it.\n"
        "- **Intended use and limitations**: TODO.",
    ]
    return "\n\n".join(parts) + "\n"
