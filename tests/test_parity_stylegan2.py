"""ganforge's stylegan2 against the reference code itself, on the reference's own files.

tests/fixtures/reference/ holds what scripts/make_reference_fixtures.py wrote by running
NVlabs/stylegan2-ada-pytorch, NVlabs/stylegan3 and rosinality/stylegan2-pytorch on the CPU with
random weights: network pickles and checkpoints in each one's own format, fixed inputs and the
reference's outputs (float32). Each file is imported as a user imports it (ganforge.load, the
same reader as `ganforge import`) and must give the same mapping z -> w, images with constant
noise at truncation 1 and 0.7, raw G's image and D's logits, within 1e-5: another resampling or
block order differs by orders of magnitude more. Then: what `ganforge import` refuses (code in a
pickle, damaged files, unknown settings, other networks, shapes that do not fit), and fine-tuning
from an imported pickle. `python tests/test_parity_stylegan2.py` prints every figure.
"""

from __future__ import annotations

import os
import pickle
import sys
import types
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml

import ganforge
from conftest import assert_one_line_error, write_config
from ganforge.errors import GanforgeError
from ganforge.interop.stylegan2_ada import Persistent, load_network_pickle

REFERENCE = Path(__file__).parent / "fixtures" / "reference"
PICKLES = [*sorted((REFERENCE / "stylegan2_ada").glob("*.pkl")), REFERENCE / "stylegan3" / "stylegan2-32.pkl"]
ROSINALITY = REFERENCE / "rosinality" / "stylegan2-32.pt"
TOLERANCE = 1e-5


def fixture_id(path: Path) -> str:
    return f"{path.parent.name}/{path.stem}"


def parity_figures(net: ganforge.api.Networks, expected: dict) -> dict[str, float]:
    """Max absolute difference to the reference's outputs, per output."""
    z, labels = expected["z"], expected["labels"]
    G, first = net.G_ema, labels[:1] if labels is not None else None
    with torch.no_grad():
        outputs = {
            "mapping z->w": (G.mapping_w(z, labels), expected["ws"]),
            "G_ema, truncation 1": (G(z, labels, noise_mode="const"), expected["image"]),
            "G_ema, truncation 0.7": (G(z, labels, truncation=0.7, noise_mode="const"), expected["image_psi0.7"]),
            "G, truncation 1": (net.G(z[:1], first, noise_mode="const"), expected["image_G"]),
            "D logits": (net.D(expected["image"], labels), expected["logits"]),
        }
    return {name: float((ours - theirs).abs().max()) for name, (ours, theirs) in outputs.items()}


def rosinality_networks() -> tuple[ganforge.api.Networks, dict]:
    """The rosinality fixture, with G_ema's truncation centre set to the reference's mean_latent
    (rosinality has no running average: its generate.py averages 4,096 random w)."""
    net = ganforge.load(ROSINALITY, device="cpu")
    expected = torch.load(REFERENCE / "rosinality" / "stylegan2-32-outputs.pt", weights_only=True)
    net.G_ema.mapping.w_avg.copy_(expected["mean_latent"])
    return net, expected


@pytest.mark.parametrize("path", PICKLES, ids=fixture_id)
def test_network_pickle_gives_the_reference_outputs(path):
    net = ganforge.load(path, device="cpu")
    expected = torch.load(path.with_suffix(".pt"), weights_only=True)
    figures = parity_figures(net, expected)
    assert max(figures.values()) <= TOLERANCE, figures
    # The outputs are far from trivial: the comparison could fail by orders of magnitude.
    assert expected["image"].abs().max() > 1 and expected["logits"].abs().max() > 1e-2
    assert (expected["image"] - expected["image_psi0.7"]).abs().max() > 0.1


def test_network_pickle_settings_become_the_config():
    manifest = yaml.safe_load((REFERENCE / "stylegan2_ada" / "manifest.json").read_text())["fixtures"]
    for name, facts in manifest.items():
        config = ganforge.load(REFERENCE / "stylegan2_ada" / f"{name}.pkl", device="cpu").config
        g, d, data = config["generator"], config["discriminator"], config["data"]
        assert (g["architecture"], d["architecture"]) == (facts["architecture"]["G"], facts["architecture"]["D"]), name
        assert (data["num_classes"], data["channels"], data["resolution"]) == \
            (facts["classes"], facts["channels"], facts["resolution"])
        assert g["conditional"] == d["conditional"] == bool(facts["classes"])
        assert d["mbstd_group"] == 2 and g["mapping_layers"] == 2 and d["mapping_layers"] == 8
        assert g["conv_clamp"] == d["conv_clamp"] == facts["settings"].get("conv_clamp")
        # ADA's p and pipeline come with the augmentation pipe where the pickle has one.
        ada = [r for r in config["regularizers"] if r["kind"] == "ada"]
        assert (ada[0]["pipeline"] if ada else None) == ("bgc" if facts["ada_p"] else None)


def test_the_fixtures_cover_each_architecture_of_g_and_d_and_the_published_layouts():
    """Issue 28: orig, skip and resnet at 32 and 64 px, conditional and not, for G and for D; and
    the layouts users load: StyleGAN2-ADA's default (G skip, D resnet) and its cifar config (G skip,
    D orig), each conditional and not."""
    manifest = yaml.safe_load((REFERENCE / "stylegan2_ada" / "manifest.json").read_text())["fixtures"]
    assert {p.stem for p in PICKLES if p.parent.name == "stylegan2_ada"} == set(manifest)
    covered = {(net, f["architecture"][net], f["resolution"], f["classes"] > 0) for f in manifest.values()
               for net in ("G", "D")}
    assert covered == {(net, arch, res, cond) for net in ("G", "D") for arch in ("orig", "skip", "resnet")
                       for res in (32, 64) for cond in (False, True)}
    pairs = {(f["architecture"]["G"], f["architecture"]["D"], f["classes"] > 0) for f in manifest.values()}
    assert {("skip", "resnet", c) for c in (False, True)} | {("skip", "orig", c) for c in (False, True)} <= pairs


def test_rosinality_checkpoint_gives_the_reference_outputs():
    net, expected = rosinality_networks()
    figures = parity_figures(net, expected)
    assert max(figures.values()) <= TOLERANCE, figures
    assert expected["image"].abs().max() > 1 and (expected["image"] - expected["image_psi0.7"]).abs().max() > 0.1
    # The importer's own centre: the mean of 10,000 w, near the reference's mean of 4,096.
    fresh = ganforge.load(ROSINALITY, device="cpu").G_ema.w_avg
    assert (fresh - expected["mean_latent"]).abs().max() < 0.1 < expected["mean_latent"].abs().max()


def test_rosinality_latent_avg_and_args_carry_over(tmp_path):
    data = torch.load(ROSINALITY, weights_only=False)
    assert data["args"].augment and data["ada_aug_p"] == 0.31
    converted = tmp_path / "converted.pt"  # what convert_weight.py writes: g_ema and latent_avg only
    latent_avg = torch.randn(data["g_ema"]["style.1.weight"].shape[0])
    torch.save({"g_ema": data["g_ema"], "latent_avg": latent_avg}, converted)
    net = ganforge.load(converted, device="cpu")
    assert torch.equal(net.G_ema.w_avg, latent_avg) and net.D is None
    full = ganforge.load(ROSINALITY, device="cpu")
    assert full.config["regularizers"][0]["kind"] == "ada" and full.config["generator"]["style_mixing"] == 0.9


# -- the public API ----------------------------------------------------------------------------


def test_load_and_generate_as_a_notebook_does():
    import numpy as np

    net = ganforge.load(REFERENCE / "stylegan2_ada" / "skip-32-cond.pkl", device="cpu")
    assert not net.G.training and not net.G_ema.training and not net.D.training
    images = net.generate(seeds=[3, 4], labels=1, truncation=0.7)
    assert images.shape == (2, 3, 32, 32) and images.min() >= -1 and images.max() <= 1
    # seeds draw z as StyleGAN2-ADA's generate.py: numpy RandomState(seed).randn(z_dim)
    z = torch.from_numpy(np.stack([np.random.RandomState(s).randn(16) for s in (3, 4)])).float()
    with torch.no_grad():
        expected = net.G_ema(z, torch.tensor([1, 1]), truncation=0.7, noise_mode="const").clamp(-1, 1)
    torch.testing.assert_close(images, expected)
    assert not torch.equal(net.generate(z=z, labels=[1, 1], ema=False), images)
    assert net.D(images, torch.tensor([1, 1])).shape == (2,)
    with pytest.raises(GanforgeError, match="conditional: give labels"):
        net.generate(seeds=[0])
    with pytest.raises(GanforgeError, match="give z .* or seeds"):
        net.generate()


# -- ganforge import: a run folder the other commands use ----------------------------------------


@pytest.fixture(scope="module")
def imported_run(tmp_path_factory):
    """resnet-64.pkl (StyleGAN2-ADA's train.py settings, ADA p 0.23) imported with the CLI."""
    from typer.testing import CliRunner

    from ganforge.cli import app

    run = tmp_path_factory.mktemp("imported") / "run"
    result = CliRunner().invoke(app, ["import", str(REFERENCE / "stylegan2_ada" / "resnet-64.pkl"), "--out", str(run)],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return run


def test_import_writes_a_run_folder_that_sample_and_info_read(cli, imported_run, tmp_path):
    info = cli("info", str(imported_run), "--json")
    assert info.exit_code == 0 and '"kind": "shape"' in info.output
    result = cli("sample", str(imported_run), "--num", "4", "--grid", "--noise-mode", "const", "--out",
                 str(tmp_path / "grid.png"))
    assert result.exit_code == 0 and (tmp_path / "grid.png").is_file()
    # The checkpoint's G_ema is the pickle's: the same images as loading the pickle itself.
    from_run = ganforge.load(imported_run, device="cpu").generate(seeds=[0, 1])
    from_pickle = ganforge.load(REFERENCE / "stylegan2_ada" / "resnet-64.pkl", device="cpu").generate(seeds=[0, 1])
    assert torch.equal(from_run, from_pickle)


def test_an_imported_run_cannot_be_resumed_and_has_no_data(cli, imported_run):
    result = cli("train", "--resume", str(imported_run))
    assert result.exit_code == 2 and "no optimizer state" in result.output and "--init" in result.output
    result = cli("eval", str(imported_run), "--metrics", "fid", "--num", "4")
    assert result.exit_code == 2 and "no data set" in result.output and "--data CONFIG" in result.output


def test_fine_tuning_from_a_pickle_carries_the_networks_and_ada_p(cli, imported_run, tmp_path):
    """StyleGAN2-ADA's `--resume=ffhq.pkl`: G, D, G_ema and ADA's p, then 20 steps on digits."""
    from ganforge.checkpoint import load_checkpoint
    from ganforge.run import find_checkpoint

    cfg = yaml.safe_load((imported_run / "config.yaml").read_text())
    cfg.update(data={"kind": "digits", "resolution": 64}, output={"dir": str(tmp_path / "tuned")},
               train={"steps": 20, "batch_size": 4, "device": "cpu", "ema": {"decay": 0.9}},
               log={"every": 5}, samples={"every": 20, "num": 4}, checkpoint={"every": 20})
    result = cli("train", str(write_config(tmp_path, cfg)), "--init", str(imported_run), "-q")
    assert result.exit_code == 0, result.output
    assert "ADA's p starts at 0.23" in result.output
    log = [yaml.safe_load(line) for line in (tmp_path / "tuned" / "log.jsonl").read_text().splitlines()]
    losses = [r[k] for r in log for k in ("d_loss", "g_loss") if k in r]
    assert len(losses) >= 8 and all(torch.isfinite(torch.tensor(losses)))
    ckpt = load_checkpoint(*find_checkpoint(tmp_path / "tuned"))
    # 5 adjustments of batch x 4 / 500k from 0.23: p stays near where the pickle left it.
    assert abs(ckpt.state["regularizers"][0]["p"] - 0.23) < 1e-3


# -- ganforge import: what it refuses, in one line, leaving nothing behind ---------------------------


class FakePersistence:
    """Writes pickles as StyleGAN2-ADA's persistence module does (its reconstruct function's name
    and a `meta` dict), without the reference code: a stand-in module of that name is installed
    only while pickling. Used to re-pickle a fixture with one thing changed."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, module_src: str = "") -> None:
        self.module_src = module_src  # the source every object carries (StyleGAN2-ADA: its networks.py)
        package, module = types.ModuleType("torch_utils"), types.ModuleType("torch_utils.persistence")

        def _reconstruct_persistent_obj(meta):  # never called: only its name goes into the pickle
            raise AssertionError("a restricted unpickler must not call this")

        _reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
        _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
        module._reconstruct_persistent_obj = _reconstruct_persistent_obj
        package.persistence = module
        monkeypatch.setitem(sys.modules, "torch_utils", package)
        monkeypatch.setitem(sys.modules, "torch_utils.persistence", module)
        self.reconstruct = _reconstruct_persistent_obj

    def obj(self, class_name: str, state: dict, module_src: str = "") -> object:
        meta = {"type": "class", "version": 6, "module_src": module_src, "class_name": class_name, "state": state}
        reconstruct = self.reconstruct

        class Obj:
            def __reduce__(self):
                return reconstruct, (meta,)

        return Obj()

    def from_persistent(self, p: Persistent) -> object:
        """A Persistent read from a fixture, as a picklable object again."""
        children = {k: self.from_persistent(c) for k, c in p.children.items()}
        state = {"_parameters": dict(p.tensors), "_buffers": {}, "_init_args": p.init_args,
                 "_init_kwargs": plain(p.init_kwargs), "_modules": children, **p.settings}
        return self.obj(p.class_name, state, module_src=self.module_src)


def plain(value: object) -> object:
    """dicts (EasyDict as the reader keeps it) as plain dicts, recursively."""
    return {k: plain(v) for k, v in value.items()} if isinstance(value, dict) else value


class Payload:
    """An object whose unpickling runs a shell command that creates `marker`."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def refused(cli, source: Path, out: Path, *fragments: str) -> None:
    """`ganforge import` exits 2 with one `error:` line holding the fragments, and writes nothing."""
    result = cli("import", str(source), "--out", str(out))
    assert_one_line_error(SimpleNamespace(returncode=result.exit_code, stdout=result.stdout, stderr=result.stderr),
                          2, *fragments)
    assert not out.exists() and not list(out.parent.glob(f".{out.name}.import-*"))


def repickle(fake: FakePersistence, fixture: str, path: Path, change) -> Path:  # noqa: ANN001
    data = load_network_pickle(REFERENCE / "stylegan2_ada" / fixture)
    change(data)
    nets = {k: fake.from_persistent(v) if isinstance(v, Persistent) else v for k, v in data.items()}
    path.write_bytes(pickle.dumps(nets))
    return path


def test_a_pickle_that_would_run_code_is_refused_and_runs_nothing(cli, tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    plain = tmp_path / "payload.pkl"
    plain.write_bytes(pickle.dumps({"G": Payload(marker)}))
    refused(cli, plain, tmp_path / "out", "refused", "system", "nothing in the file was run")
    # The same call hidden inside a network pickle, beside the source code every such pickle
    # carries (here: the same shell command), which the reader never runs.
    fake = FakePersistence(monkeypatch, module_src=f"import os\nos.system('touch {marker}')\n")
    hidden = repickle(fake, "orig-32.pkl", tmp_path / "hidden.pkl",
                      lambda d: d["G_ema"].children["synthesis"].tensors.update(noise=Payload(marker)))
    refused(cli, hidden, tmp_path / "out", "refused", "system")
    source_only = repickle(fake, "orig-32.pkl", tmp_path / "source.pkl", lambda d: None)
    assert ganforge.load(source_only, device="cpu").generate(seeds=[0]).shape == (1, 3, 32, 32)
    assert not marker.exists()


def test_damaged_and_foreign_files_are_refused_in_one_line(cli, tmp_path, monkeypatch):
    data = (REFERENCE / "stylegan2_ada" / "skip-64.pkl").read_bytes()
    (tmp_path / "truncated.pkl").write_bytes(data[: len(data) // 2])
    refused(cli, tmp_path / "truncated.pkl", tmp_path / "out", "damaged or truncated", "nothing in it was run")
    (tmp_path / "notes.txt").write_text("not a network")
    refused(cli, tmp_path / "notes.txt", tmp_path / "out", "not a file ganforge can import")
    refused(cli, tmp_path / "missing.pkl", tmp_path / "out", "no such file")
    refused(cli, REFERENCE / "stylegan3" / "stylegan3-r-16.pkl", tmp_path / "out", "StyleGAN3's alias-free",
            "no such network")
    fake = FakePersistence(monkeypatch)
    xl = repickle(fake, "orig-32.pkl", tmp_path / "xl.pkl",
                  lambda d: setattr(d["D"], "class_name", "ProjectedDiscriminator"))
    refused(cli, xl, tmp_path / "out", "StyleGAN-XL", "no such network")
    # StyleGAN-XL's D holds timm's feature networks as plain pickled classes: refused by name, unrun.
    # (Written by hand: GLOBAL timm.models.efficientnet EfficientNet, an empty tuple, NEWOBJ, STOP.)
    timm_pickle = tmp_path / "timm.pkl"
    timm_pickle.write_bytes(b"\x80\x02ctimm.models.efficientnet\nEfficientNet\n)\x81.")
    refused(cli, timm_pickle, tmp_path / "out", "timm.models.efficientnet.EfficientNet", "StyleGAN-XL",
            "nothing in the file was run")


def test_unknown_settings_and_shapes_that_do_not_fit_are_named(cli, tmp_path, monkeypatch):
    fake = FakePersistence(monkeypatch)
    unknown = repickle(fake, "orig-32.pkl", tmp_path / "unknown.pkl",
                       lambda d: d["G_ema"].init_kwargs["synthesis_kwargs"].update(channel_mult=2))
    refused(cli, unknown, tmp_path / "out", "unknown architecture key 'channel_mult'")

    def widen(d: dict) -> None:
        for name in ("G", "G_ema"):
            layer = d[name].children["synthesis"].children["b8"].children["conv0"].children["affine"]
            layer.tensors["weight"] = torch.zeros(8, 13)
    shapes = repickle(fake, "orig-32.pkl", tmp_path / "shapes.pkl", widen)
    refused(cli, shapes, tmp_path / "out", "synthesis.b8.conv0.affine.weight", "(8, 13) in the file", "(8, 12)")
    # D settings that ganforge's D has for the whole network, or fixed: refused, not imported into a
    # network that would compute something else with the same weights.
    clamped = repickle(fake, "resnet-32-cond.pkl", tmp_path / "clamped.pkl",
                       lambda d: d["D"].children["b16"].children["conv1"].settings.update(conv_clamp=256))
    refused(cli, clamped, tmp_path / "out", "D", "differ in conv_clamp")
    # The 4x4 epilogue's conv is one of those layers too.
    epilogue = repickle(fake, "resnet-32-cond.pkl", tmp_path / "epilogue.pkl",
                        lambda d: d["D"].children["b4"].children["conv"].settings.update(conv_clamp=256))
    refused(cli, epilogue, tmp_path / "out", "D", "differ in conv_clamp")
    mapped = repickle(fake, "resnet-32-cond.pkl", tmp_path / "mapped.pkl",
                      lambda d: d["D"].children["mapping"].children["fc0"].settings.update(bias_gain=0.1))
    refused(cli, mapped, tmp_path / "out", "label mapping's lr_multiplier is 0.1")


def test_a_d_whose_blocks_differ_in_architecture_is_refused(cli, tmp_path, monkeypatch):
    fake = FakePersistence(monkeypatch)
    mixed = repickle(fake, "g-skip-d-resnet-32.pkl", tmp_path / "mixed.pkl",
                     lambda d: d["D"].children["b16"].settings.update(architecture="skip"))
    refused(cli, mixed, tmp_path / "out", "D", "blocks of different architectures")


def test_augment_settings_other_than_ganforges_are_named_in_the_notes(cli, tmp_path, monkeypatch):
    """An augment_pipe with train.py's bgc settings imports silently; one with another op strength
    or range keeps its p and pipeline, and the note names each setting that differs."""
    import json

    plain_run = tmp_path / "plain"
    assert cli("import", str(REFERENCE / "stylegan2_ada" / "resnet-64.pkl"), "--out", str(plain_run)).exit_code == 0
    assert json.loads((plain_run / "import.json").read_text())["notes"] == []
    fake = FakePersistence(monkeypatch)
    tuned = repickle(fake, "resnet-64.pkl", tmp_path / "tuned.pkl",
                     lambda d: d["augment_pipe"].settings.update(xflip=0.5, scale_std=0.3, noise_std=0.2))
    result = cli("import", str(tuned), "--out", str(tmp_path / "run"))
    assert result.exit_code == 0, result.output
    [note] = json.loads((tmp_path / "run" / "import.json").read_text())["notes"]
    assert "xflip 0.5 (ganforge: 1)" in note and "scale_std 0.3 (ganforge: 0.2)" in note
    assert "noise_std" not in note  # noise is not one of the pipeline's operations
    assert f"note: {note}" in result.stderr
    cfg = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert cfg["regularizers"][0]["pipeline"] == "bgc"
    from ganforge.checkpoint import load_checkpoint
    from ganforge.run import find_checkpoint

    assert load_checkpoint(*find_checkpoint(tmp_path / "run")).state["regularizers"][0]["p"] == pytest.approx(0.23)


def test_out_that_exists_is_refused_and_kept(cli, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    result = cli("import", str(REFERENCE / "stylegan2_ada" / "orig-32.pkl"), "--out", str(out))
    assert result.exit_code == 2 and "already exists" in result.output
    assert [p.name for p in out.iterdir()] == ["mine.txt"]


if __name__ == "__main__":  # every figure, for the README
    for path in PICKLES:
        print(fixture_id(path), parity_figures(ganforge.load(path, device="cpu"),
                                                torch.load(path.with_suffix(".pt"), weights_only=True)))
    print(fixture_id(ROSINALITY), parity_figures(*rosinality_networks()))
