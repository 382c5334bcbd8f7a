"""`ganforge import` end to end through the CLI (in-process), on the reference fixtures of
tests/fixtures/reference/: the run folder it writes works with `eval --data`, `export`,
`interpolate` and `project`; BigGAN-PyTorch folders (with and without G_ema.pth) and rosinality
checkpoints become runs that give the file's own images; damaged and foreign input is refused in
one line with nothing left at --out."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

import ganforge
from conftest import one_line_error, stand_in_inception_state, write_config

REFERENCE = Path(__file__).parent / "fixtures" / "reference"
PICKLE = REFERENCE / "stylegan2_ada" / "skip-64.pkl"  # 1x64x64 (digits can score it), unconditional
BIGGAN = REFERENCE / "biggan" / "px32" / "weights"
ROSINALITY = REFERENCE / "rosinality" / "stylegan2-32.pt"


def imported(cli, source: Path, out: Path) -> dict:
    """Import `source` to `out` with the CLI; the run's import.json."""
    result = cli("import", str(source), "--out", str(out))
    assert result.exit_code == 0, result.output
    return json.loads((out / "import.json").read_text())


def same_images(run: Path, source: Path, ema: bool = True, labels: list[int] | None = None) -> None:
    """The run folder and the file it came from give the same images (seeds 0-1, constant noise)."""
    a, b = (ganforge.load(path, device="cpu").generate(seeds=[0, 1], labels=labels, ema=ema) for path in (run, source))
    assert torch.equal(a, b)


@pytest.fixture(scope="module")
def pickle_run(tmp_path_factory):
    from typer.testing import CliRunner

    from ganforge.cli import app

    run = tmp_path_factory.mktemp("imported") / "run"
    result = CliRunner().invoke(app, ["import", str(PICKLE), "--out", str(run)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return run


# -- the other commands on an imported StyleGAN2-ADA pickle ---------------------------------------


def test_eval_with_data_scores_the_pickles_g_ema(cli, pickle_run, tmp_path):
    """FID of the imported G_ema against 64 px digits, with stand-in Inception weights,
    equal to the FID recomputed from the pickle's own images through the same extractor."""
    from test_eval_folders import reference_fid

    from ganforge.generation.drawing import draw, load_generator
    from ganforge.metrics.features import InceptionExtractor, to_uint8

    state = stand_in_inception_state()
    torch.save(state, tmp_path / "inception.pth")
    data = write_config(tmp_path, {"data": {"kind": "digits", "resolution": 64}})
    cache = tmp_path / "cache"
    result = cli("eval", str(pickle_run), "--data", str(data), "--metrics", "fid", "--num", "8", "--real-num", "10",
                 "--inception-weights", str(tmp_path / "inception.pth"), "--cache-dir", str(cache),
                 "--out", str(tmp_path / "report.json"), "-q")
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["reference"]["data"]["kind"] == "digits" and report["num_samples"] == 8
    # The run's G_ema draws what the pickle's G_ema draws (test_parity_stylegan2), so this is the pickle scored.
    generator = load_generator(pickle_run, device="cpu")
    with torch.no_grad():
        fake, _ = InceptionExtractor(state, "random")(to_uint8(draw(generator, 8)))
    [cached] = list(cache.iterdir())
    real = torch.load(cached, weights_only=True)["values"]
    assert report["metrics"]["fid"] == pytest.approx(reference_fid(fake.double().numpy(), real.double().numpy()),
                                                     rel=1e-4)


def test_export_of_an_imported_pickle_gives_its_images(cli, pickle_run, tmp_path):
    out = tmp_path / "model"
    result = cli("export", str(pickle_run), "--format", "safetensors", "--out", str(out))
    assert result.exit_code == 0, result.output
    same_images(out, PICKLE)


def test_interpolate_walks_the_imported_generator(cli, pickle_run, tmp_path):
    result = cli("interpolate", str(pickle_run), "--out", str(tmp_path / "walk.png"), "--num-frames", "3",
                 "--rows", "1", "-q")
    assert result.exit_code == 0, result.output
    strip = np.asarray(Image.open(tmp_path / "walk.png").convert("RGB")).astype(int)
    assert strip.shape[0] >= 64 and strip.shape[1] >= 3 * 64  # one row of three 64 px frames (and borders)
    width = strip.shape[1] // 3
    assert np.abs(strip[:, :width] - strip[:, -width:]).mean() > 1  # the ends of the walk are different images


def test_project_into_the_imported_generator_reduces_the_error(cli, pickle_run, tmp_path):
    """A target the imported G drew itself: projection into its w space lowers the pixel error."""
    from ganforge.imaging import to_pil

    image = ganforge.load(pickle_run, device="cpu").generate(seeds=[7])[0]
    to_pil(image).save(tmp_path / "target.png")
    result = cli("project", str(pickle_run), "--target", str(tmp_path / "target.png"), "--out", str(tmp_path / "p"),
                 "--steps", "12", "--seed", "1", "--json", "-q")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["space"].startswith("w") and summary["pixel_mse_end"] < summary["pixel_mse_start"]
    assert (tmp_path / "p" / "latent.npy").is_file() and (tmp_path / "p" / "projection.png").is_file()


# -- BigGAN-PyTorch folders and rosinality checkpoints through the CLI ---------------------------


def test_a_biggan_folder_imports_to_a_run_that_gives_its_images(cli, tmp_path):
    record = imported(cli, BIGGAN, tmp_path / "run")
    assert record["format"] == "BigGAN-PyTorch weights" and sorted(record["networks"]) == ["D", "G", "G_ema"]
    assert record["notes"] == []
    for ema in (True, False):
        same_images(tmp_path / "run", BIGGAN, ema=ema, labels=[0, 1])
    result = cli("sample", str(tmp_path / "run"), "--num", "4", "--grid", "--out", str(tmp_path / "grid.png"))
    assert result.exit_code == 0 and (tmp_path / "grid.png").is_file()


def test_a_biggan_folder_without_g_ema_samples_from_g_and_says_so(cli, tmp_path):
    """BigGAN-PyTorch writes G_ema.pth only with --ema (off by default)."""
    folder = tmp_path / "weights"
    shutil.copytree(BIGGAN, folder)
    (folder / "G_ema.pth").unlink()
    result = cli("import", str(folder), "--out", str(tmp_path / "run"))
    assert result.exit_code == 0, result.output
    assert "note: the file has no G_ema; ganforge's G_ema starts as a copy of its G" in result.stderr
    record = json.loads((tmp_path / "run" / "import.json").read_text())
    assert any("no G_ema" in n for n in record["notes"])
    for command in (["info", str(tmp_path / "run")],
                    ["sample", str(tmp_path / "run"), "--num", "2", "--out", str(tmp_path / "s")]):
        assert cli(*command).exit_code == 0
    run = ganforge.load(tmp_path / "run", device="cpu")
    # G_ema is G.pth's weights, in a module of its own (fine-tuning trains G, not its average).
    assert run.G_ema is not run.G
    assert torch.equal(run.generate(seeds=[0, 1], labels=[0, 1]), run.generate(seeds=[0, 1], labels=[0, 1], ema=False))
    assert torch.equal(run.generate(seeds=[3], labels=[2], ema=False),
                       ganforge.load(BIGGAN, device="cpu").generate(seeds=[3], labels=[2], ema=False))


def test_a_rosinality_checkpoint_imports_to_a_run_that_gives_its_images(cli, tmp_path):
    record = imported(cli, ROSINALITY, tmp_path / "run")
    assert record["format"].startswith("rosinality") and sorted(record["networks"]) == ["D", "G", "G_ema"]
    same_images(tmp_path / "run", ROSINALITY)
    cfg = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert cfg["generator"]["kind"] == "stylegan2" and cfg["data"]["resolution"] == 32


def refused(cli, source: Path, out: Path, *fragments: str) -> None:
    """exit 2, one `error:` line with the fragments, nothing at --out and no staging folder beside it."""
    one_line_error(cli("import", str(source), "--out", str(out)), 2, *fragments)
    assert not out.exists() and not list(out.parent.glob(f".{out.name}.import-*"))


def test_damaged_and_foreign_folders_and_files_are_refused_in_one_line(cli, tmp_path):
    folder = tmp_path / "weights"
    shutil.copytree(BIGGAN, folder)
    data = (folder / "G.pth").read_bytes()
    (folder / "G.pth").write_bytes(data[: len(data) // 2])
    refused(cli, folder, tmp_path / "out", "G.pth could not be read", "damaged or truncated")
    other = tmp_path / "photos"
    other.mkdir()
    (other / "cat.png").write_bytes(b"\x89PNG")
    refused(cli, other, tmp_path / "out", "is not a folder ganforge can import", "BigGAN-PyTorch weights")
    data = ROSINALITY.read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    refused(cli, tmp_path / "cut.pt", tmp_path / "out", "cut.pt", "damaged or truncated")
