"""`ganforge import`: another tool's networks (StyleGAN2-ADA/StyleGAN3 pickle, rosinality or
BigGAN-PyTorch checkpoint) as an ordinary ganforge run folder."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import typer

from ganforge.commands_common import JSON_OPTION, user_errors
from ganforge.errors import RunFolderError


@user_errors
def import_command(
    source: Path = typer.Argument(..., help="The file to import: a StyleGAN2-ADA/StyleGAN3 network pickle, a "
                                            "rosinality stylegan2-pytorch checkpoint, BigGAN-PyTorch weights."),
    out: Path = typer.Option(..., "--out", "-o", help="The run folder to write (must not exist)."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Import another tool's GAN as a run folder that sample, eval, project, export and train --init use.
    Pickles are read without running any of their code."""
    from ganforge import interop
    from ganforge.checkpoint import sha256_of
    from ganforge.config import dump_yaml
    from ganforge.run import RunDir

    if out.exists() or out.is_symlink():
        raise RunFolderError(f"--out {out} already exists; give a new folder (nothing was written)")
    imported = interop.read(source)
    ckpt = interop.to_checkpoint(imported, f"{source}")
    record = {"source": str(source.resolve()), "format": imported.source, "sha256": sha256_of(source)
              if source.is_file() else None, "networks": [n for n in ("G", "D", "G_ema") if n in ckpt.state],
              "ada_p": imported.extras.get("ada_p"), "notes": imported.extras.get("notes", [])}
    # Everything is written into a hidden folder beside --out and renamed at the end: a failure
    # leaves nothing at --out.
    staging = out.with_name(f".{out.name}.import-{os.getpid()}")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        run = RunDir(staging)
        run.create()
        run.write_config(dump_yaml(ckpt.config))
        run.save_checkpoint(ckpt, keep=1)
        (staging / "import.json").write_text(json.dumps(record, indent=1) + "\n")
        run.release_lock()
        os.rename(staging, out)
    except OSError as e:
        raise RunFolderError(f"could not write {out} ({e.strerror or type(e).__name__}); nothing was left "
                             "there") from None
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    for note in record["notes"]:
        typer.echo(f"note: {note}", err=True)
    if as_json:
        typer.echo(json.dumps({"run": str(out), **record}, indent=1))
        return
    g = ckpt.config["generator"]
    data = ckpt.config["data"]
    classes = f", {data['num_classes']} classes" if data["num_classes"] else ""
    ada = f", ADA p {record['ada_p']:.4g}" if record["ada_p"] is not None else ""
    typer.echo(f"imported {source} ({imported.source}): {', '.join(record['networks'])} as {g['kind']} "
               f"({data['channels']}x{data['resolution']}x{data['resolution']}{classes}){ada} -> {out}")
    typer.echo(f"  sample:    ganforge sample {out} --num 16 --grid --out {out / 'samples.png'}")
    typer.echo(f"  score:     ganforge eval {out} --data CONFIG --metrics fid")
    typer.echo(f"  fine-tune: ganforge train CONFIG --init {out}")
