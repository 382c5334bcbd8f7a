"""Looking at and shipping results, each command run as a user runs it on a tiny CPU run:
report, info, runs, interpolate, export (TorchScript, ONNX), TensorBoard, --json, completion."""

from __future__ import annotations

import base64
import io
import json
import re
import subprocess
import sys

import pytest
import torch
from PIL import Image

from conftest import assert_one_line_error, run_cli, tiny_config, write_config
from ganforge.metrics.inception import FIDInception


@pytest.fixture(scope="module")
def image_run(tmp_path_factory):
    """A tiny digits run with samples, two checkpoints and two in-training evaluations."""
    from typer.testing import CliRunner

    from ganforge.cli import app

    tmp = tmp_path_factory.mktemp("outputs")
    torch.manual_seed(0)
    weights = tmp / "inception-random.pth"
    torch.save(FIDInception().net.state_dict(), weights)
    cfg = tiny_config(tmp / "run", log={"every": 2, "tensorboard": True},
                      eval={"every": 3, "metrics": ["fid", "is"], "num_samples": 10, "real_samples": 10, "best": "fid",
                            "extractor": {"kind": "inception", "weights": str(weights)},
                            "cache_dir": str(tmp / "cache")})
    result = CliRunner().invoke(app, ["train", str(write_config(tmp, cfg)), "-q"], catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    return tmp / "run"


def test_report_is_one_self_contained_page_with_every_section(cli, image_run):
    result = cli("report", str(image_run))
    assert result.exit_code == 0, result.stderr
    page = (image_run / "report.html").read_text()
    for section in ("Summary", "Losses", "Learning rates", "Metrics", "Latest samples", "Samples over training",
                    "Config"):
        assert f">{section}</h2>" in page
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    # losses, learning rates, fid and is curves, the latest grid, two grids over training
    assert len(images) == 7
    for data in images:
        Image.open(io.BytesIO(base64.b64decode(data))).verify()
    assert not re.search(r'(src|href)="(https?:|//)', page)  # nothing fetched from elsewhere
    assert "fid" in page and "inception-v3-fid" in page and "10 generated samples" in page


def test_info_shows_the_checkpoint(cli, image_run):
    from ganforge.checkpoint import load_checkpoint

    result = cli("info", str(image_run), "--json")
    assert result.exit_code == 0, result.stderr
    details = json.loads(result.stdout)
    assert details["step"] == 6 and details["steps"] == 6
    # Parameter counts from the checkpoint's tensors, BatchNorm's running statistics (buffers) left out.
    state = load_checkpoint(image_run / "checkpoints" / "step-00000006.pt").state
    buffers = ("running_mean", "running_var", "num_batches_tracked")
    for part, net in (("generator", "G"), ("discriminator", "D")):
        count = sum(v.numel() for k, v in state[net].items() if not k.endswith(buffers))
        assert details[part]["parameters"] == count, part
    # By hand for configs/tiny.yaml (DCGAN, latent 8, widths 16 and 8, 16x16 grey): G = 8*16*16 + 2*16
    # + 16*8*16 + 2*8 + (8*1*16 + 1), D = (1*8*16 + 8) + 8*16*16 + 2*16 + (16*1*16 + 1).
    assert (details["generator"]["parameters"], details["discriminator"]["parameters"]) == (4272, 2464)
    assert set(details["latest_metrics"]) == {"fid", "is", "is_std"}
    assert details["torch_version"] == str(torch.__version__)
    names = [f["file"] for f in details["files"]]
    assert "step-00000006.pt" in names and "best.pt" in names
    text = cli("info", str(image_run)).stdout
    assert "parameters" in text and "best: fid=" in text


def test_runs_lists_every_run(cli, image_run, tmp_path):
    second = tmp_path / "runs" / "other"
    assert cli("train", str(write_config(tmp_path, tiny_config(second))), "-q").exit_code == 0
    (tmp_path / "runs" / "first").symlink_to(image_run)
    rows = json.loads(cli("runs", str(tmp_path / "runs"), "--json").stdout)
    assert {r["name"] for r in rows} == {"first", "other"}
    first = next(r for r in rows if r["name"] == "first")
    assert first["step"] == 6 and first["best"]["figure"] == "fid" and first["data"] == "digits"
    table = cli("runs", str(tmp_path / "runs")).stdout
    assert "first" in table and "other" in table and "fid=" in table
    assert_one_line_error(run_cli("runs", str(tmp_path / "missing")), 2, "no folder")


def test_interpolate_gif_and_strip(cli, image_run, tmp_path):
    gif = tmp_path / "walk.gif"
    result = cli("interpolate", str(image_run), "--num-frames", "7", "--rows", "2", "--cols", "3", "--out", str(gif),
                 "-q")
    assert result.exit_code == 0, result.stderr
    with Image.open(gif) as img:
        assert img.n_frames == 7 and img.is_animated
        # 2 x 3 cells of 16 px (+ padding), enlarged 6x for visibility
        assert img.size == ((3 * 18 + 2) * 6, (2 * 18 + 2) * 6)
        first = img.convert("RGB").copy()
        img.seek(3)
        assert first.tobytes() != img.convert("RGB").tobytes()  # it moves
    png = tmp_path / "strip.png"
    assert cli("interpolate", str(image_run), "--num-frames", "5", "--rows", "3", "--out", str(png)).exit_code == 0
    assert Image.open(png).size == ((5 * 18 + 2) * 4, (3 * 18 + 2) * 4)
    assert_one_line_error(run_cli("interpolate", str(image_run), "--out", str(tmp_path / "x.avi")), 2, ".gif")
    assert_one_line_error(run_cli("interpolate", str(image_run), "--out", str(gif), "--truncation", "0.0001"), 2,
                          "--truncation 0.0001", "truncated normal")
    assert_one_line_error(run_cli("interpolate", str(image_run), "--out", str(gif), "--class", "3"), 2,
                          "--class", "unconditional")


def test_slerp_keeps_the_norm_between_equal_norm_points():
    from ganforge.interpolate import slerp

    a, b = torch.tensor([[3.0, 0.0]]), torch.tensor([[0.0, 3.0]])
    mid = slerp(a, b, torch.tensor([0.5]))
    assert torch.allclose(mid.norm(), torch.tensor(3.0)) and torch.allclose(mid, torch.tensor([[2.1213, 2.1213]]),
                                                                            atol=1e-4)
    assert torch.allclose(slerp(a, b, torch.tensor([0.0])), a) and torch.allclose(slerp(a, b, torch.tensor([1.0])), b)


def _expected(image_run, tmp_path, batch=3):
    from ganforge.generation.drawing import load_generator

    loaded = load_generator(image_run, device="cpu")
    z = torch.randn(batch, loaded.G.latent_dim, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        expected = loaded.G(z)
    torch.save({"z": z, "expected": expected}, tmp_path / "io.pt")
    return tmp_path / "io.pt"


def test_torchscript_export_runs_without_ganforge(cli, image_run, tmp_path):
    out = tmp_path / "generator.pt"
    result = cli("export", str(image_run), "--format", "torchscript", "--out", str(out), "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["latent_dim"] == 8
    io_file = _expected(image_run, tmp_path)
    code = f"""
import json, sys, warnings
warnings.simplefilter("ignore")
import torch
extra = {{"ganforge.json": ""}}
model = torch.jit.load({str(out)!r}, _extra_files=extra)
meta = json.loads(extra["ganforge.json"])
data = torch.load({str(io_file)!r}, weights_only=True)
out = model(data["z"])
assert "ganforge" not in sys.modules
print(json.dumps({{"max_diff": (out - data["expected"]).abs().max().item(), "meta": meta, "shape": list(out.shape)}}))
"""
    report = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                       cwd=tmp_path).stdout)
    assert report["max_diff"] < 1e-4 and report["shape"] == [3, 1, 16, 16]
    assert report["meta"]["latent_dim"] == 8 and report["meta"]["output_range"] == [-1.0, 1.0]
    assert report["meta"]["resolution"] == 16 and report["meta"]["num_classes"] == 0


def test_onnx_export_runs_in_onnxruntime(cli, image_run, tmp_path):
    import onnxruntime  # noqa: F401  (a dev dependency: missing, this fails rather than skips)

    out = tmp_path / "generator.onnx"
    result = cli("export", str(image_run), "--format", "onnx", "--out", str(out))
    assert result.exit_code == 0, result.stderr
    io_file = _expected(image_run, tmp_path, batch=5)
    code = f"""
import json, sys
import numpy as np, onnxruntime, torch
data = torch.load({str(io_file)!r}, weights_only=True)
session = onnxruntime.InferenceSession({str(out)!r}, providers=["CPUExecutionProvider"])
out = session.run(None, {{"z": data["z"].numpy()}})[0]
meta = {{k: json.loads(v) for k, v in session.get_modelmeta().custom_metadata_map.items()}}
assert "ganforge" not in sys.modules
print(json.dumps({{"max_diff": float(np.abs(out - data["expected"].numpy()).max()), "meta": meta}}))
"""
    report = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                       cwd=tmp_path).stdout)
    assert report["max_diff"] < 1e-4
    assert report["meta"]["latent_dim"] == 8 and report["meta"]["inputs"] == ["z"]


def test_tensorboard_event_files(image_run):
    from tensorboard.backend.event_processing import event_accumulator  # a dev dependency: never skipped
    acc = event_accumulator.EventAccumulator(str(image_run / "tensorboard"), size_guidance={"images": 0})
    acc.Reload()
    tags = acc.Tags()
    assert {"train/d_loss", "train/g_loss", "train/lr_g", "train/img_per_s", "eval/fid"} <= set(tags["scalars"])
    assert [e.step for e in acc.Scalars("train/d_loss")] == [2, 4, 6]
    assert "samples" in tags["images"] and len(acc.Images("samples")) == 2
    assert any("config" in t for t in tags["tensors"])


def test_sample_json_and_quiet(cli, image_run, tmp_path):
    result = cli("sample", str(image_run), "--num", "3", "--out", str(tmp_path / "s"), "--json", "--quiet")
    assert result.exit_code == 0 and result.stderr == ""
    report = json.loads(result.stdout)
    assert report["num"] == 3 and len(report["files"]) == 3


def test_shell_completion_script():
    # Typer detects the shell from the parent processes, and a detached pytest has none: its test
    # switch makes `--show-completion` take the shell as a value instead.
    result = run_cli("--show-completion", "bash", env={"_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"})
    assert result.returncode == 0 and "_GANFORGE_COMPLETE" in result.stdout
