"""ganforge's biggan against BigGAN-PyTorch itself: the reference's own weights files and outputs
(written by scripts/make_reference_fixtures.py from a checkout of ajbrock/BigGAN-PyTorch, CPU,
fp32) load one to one into the networks that `interop.biggan_pytorch.read` describes, and give
the reference's images and logits; the reader refuses bad input in one line."""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import pytest
import torch

from ganforge.build import build_discriminator, build_generator
from ganforge.config import Component
from ganforge.data import DataInfo
from ganforge.errors import CheckpointError
from ganforge.interop import biggan_pytorch
from ganforge.interop.biggan_pytorch import detect, read

FIXTURES = Path(__file__).parent / "fixtures" / "reference" / "biggan"
RUNS = ["px32", "px128"]
TOLERANCE = 1e-5


def networks(imported) -> tuple[torch.nn.Module, ...]:
    """G, G_ema and D built by ganforge's factory from what `read` returned, weights loaded strictly."""
    data = imported.data_shape
    info = DataInfo("imported", (data["channels"], data["resolution"], data["resolution"]), data["num_classes"])
    params = {k: v for k, v in imported.generator.items() if k != "kind"}
    G, G_ema = (build_generator(Component("biggan", params), info) for _ in range(2))
    D = build_discriminator(Component("biggan", {k: v for k, v in imported.discriminator.items() if k != "kind"}),
                            info)
    for net, sd in ((G, imported.G), (G_ema, imported.G_ema), (D, imported.D)):
        net.load_state_dict(sd, strict=True)
        net.eval()
    return G, G_ema, D


def max_difference(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape
    return (a - b).abs().max().item()


@pytest.mark.parametrize("run", RUNS)
def test_the_reference_weights_give_the_reference_outputs(run):
    ref = torch.load(FIXTURES / run / "reference.pt", weights_only=True)
    trained = torch.load(FIXTURES / run / "reference_train.pt", weights_only=True)
    G, G_ema, D = networks(read(FIXTURES / run / "weights"))
    z, y = ref["z"], ref["y"]
    with torch.no_grad():
        figures = {"G": max_difference(G(z, y), ref["G"]),
                   "G_ema": max_difference(G_ema(z[:1], y[:1]), ref["G_ema"]),
                   "D": max_difference(D(ref["G"], y), ref["D"])}
        # Training mode: batch statistics, and one power-iteration step in every layer (two in
        # the 128 px G) that moves u, sv and the running statistics as the reference's did.
        G.train(), D.train()
        figures["G_train"] = max_difference(G(z, y), trained["G"])
        figures["D_train"] = max_difference(D(ref["G"], y), trained["D"])
    for net, key in ((G, "G_buffers"), (D, "D_buffers")):
        buffers = dict(net.named_buffers())
        assert set(trained[key]) <= set(buffers)
        figures[key] = max(max_difference(buffers[k], v) for k, v in trained[key].items())
    print(run, figures)  # the parity figures (README)
    assert all(f <= TOLERANCE for f in figures.values()), figures
    assert ref["G"].std() > 0.1 and ref["D"].abs().max() > 0.1  # the outputs are not trivially near zero


def test_the_architecture_comes_from_state_dict_pth():
    imported = read(FIXTURES / "px128" / "weights")
    assert imported.source == "BigGAN-PyTorch weights"
    assert imported.data_shape == {"channels": 3, "resolution": 128, "num_classes": 5}
    g, d = imported.generator, imported.discriminator
    # As the fixture's command line: --G_ch 2 --dim_z 30 --hier --G_shared --shared_dim 8 --G_attn 32
    # --mybn --num_G_SVs 2 --num_G_SV_itrs 2 --SN_eps 1e-6 --BN_eps 1e-4; --D_attn 16_8 --D_thin.
    assert (g["ch"], g["dim_z"], g["hier"], g["shared"], g["shared_dim"], g["attention"]) == (2, 30, True, True, 8,
                                                                                             [32])
    assert (g["mybn"], g["cross_replica"], g["num_svs"], g["num_sv_itrs"], g["sn_eps"], g["bn_eps"]) == \
        (True, False, 2, 2, 1e-6, 1e-4)
    assert (d["ch"], d["wide"], d["attention"], d["init"]) == (2, False, [16, 8], "xavier")
    assert imported.extras == {}


@pytest.mark.parametrize("name", ["G_ema.pth", "D.pth", "state_dict.pth"])
def test_a_file_of_the_folder_reads_the_folder(name):
    folder = read(FIXTURES / "px32" / "weights")
    single = read(FIXTURES / "px32" / "weights" / name)
    assert single.generator == folder.generator and single.discriminator == folder.discriminator
    assert torch.equal(single.G_ema["linear.weight"], folder.G_ema["linear.weight"])


def copy_weights(tmp_path: Path, run: str, without: tuple[str, ...] = (), suffix: str = "") -> Path:
    folder = tmp_path / "weights"
    folder.mkdir()
    for file in (FIXTURES / run / "weights").iterdir():
        if file.name not in without:
            shutil.copy(file, folder / file.name.replace(".pth", f"{suffix}.pth"))
    return folder


def test_without_state_dict_pth_the_architecture_is_read_off_the_shapes(tmp_path):
    folder = copy_weights(tmp_path, "px32", without=("state_dict.pth",))
    imported = read(folder)
    described = read(FIXTURES / "px32" / "weights")
    init = {"init": "ortho"}  # shapes do not show it (only a fresh network would use it)
    assert imported.generator == {**described.generator, **init}
    assert imported.discriminator == {**described.discriminator, **init}
    assert "no state_dict.pth" in imported.extras["notes"][0] and "BN_eps 1e-05" in imported.extras["notes"][0]
    # The 32 px run used the default epsilons: the same outputs.
    G, _, D = networks(imported)
    ref = torch.load(FIXTURES / "px32" / "reference.pt", weights_only=True)
    with torch.no_grad():
        assert max_difference(G(ref["z"], ref["y"]), ref["G"]) <= TOLERANCE


LAYOUTS = json.loads((FIXTURES / "layouts.json").read_text())


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_ganforge_builds_the_reference_layout(name):
    """64 and 256 px, attention at 64, cross-replica BN, a thin D, a dim_z with a remainder:
    the names and shapes BigGAN-PyTorch's Generator and Discriminator have for that command line."""
    layout = LAYOUTS[name]
    generator, discriminator, data = biggan_pytorch._from_config(layout["config"], Path(name))
    assert generator["dim_z"] == layout["dim_z_built"]
    with torch.device("meta"):
        G = biggan_pytorch._build("G", generator, data, Path(name))
        D = biggan_pytorch._build("D", discriminator, data, Path(name))
    for net, expected in ((G, layout["G"]), (D, layout["D"])):
        assert {k: list(v.shape) for k, v in net.state_dict().items()} == expected
    # The same architecture read off the shapes alone (what shapes cannot show aside).
    zeros = {part: {k: torch.zeros(shape) for k, shape in layout[part].items()} for part in ("G", "D")}
    g, d, shape = biggan_pytorch._from_shapes(zeros["G"], zeros["D"], Path(name))
    unseen = ("init", "sn_eps", "bn_eps", "num_sv_itrs")
    assert shape == data
    for found, described in ((g, generator), (d, discriminator)):
        assert {k: v for k, v in found.items() if k not in unseen} == \
            {k: v for k, v in described.items() if k not in unseen}


# -- detect -------------------------------------------------------------------------------------


def test_detect_knows_the_folder_and_its_files_and_nothing_else(tmp_path):
    weights = FIXTURES / "px128" / "weights"  # pre-1.6 serialization: found by its pickled keys too
    assert detect(weights) and detect(weights / "G.pth") and detect(weights / "state_dict.pth")
    assert detect(FIXTURES / "px32" / "weights" / "D.pth")
    other = tmp_path / "G.pth"
    torch.save({"linear.weight": torch.zeros(2, 2)}, other)  # a G.pth of some other network
    assert not detect(other) and not detect(tmp_path)
    assert not detect(FIXTURES / "px32")  # the fixture folder, not a weights folder
    assert not detect(tmp_path / "missing.pth")


# -- bad input ----------------------------------------------------------------------------------


def one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message and "Traceback" not in message
    return message


def test_a_truncated_file_is_one_line(tmp_path):
    folder = copy_weights(tmp_path, "px32")
    data = (folder / "G.pth").read_bytes()
    (folder / "G.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError) as error:
        read(folder)
    assert "G.pth could not be read" in one_line(error) and "damaged or truncated" in one_line(error)


def test_a_shape_that_does_not_fit_names_the_parameter_and_both_shapes(tmp_path):
    folder = copy_weights(tmp_path, "px32")
    sd = torch.load(folder / "G_ema.pth", weights_only=True)
    sd["blocks.1.0.conv2.weight"] = torch.zeros(16, 16, 1, 1)
    torch.save(sd, folder / "G_ema.pth")
    with pytest.raises(CheckpointError) as error:
        read(folder)
    assert one_line(error).endswith("G_ema.pth: parameter blocks.1.0.conv2.weight has shape (16, 16, 1, 1) in the "
                                    "file but (16, 16, 3, 3) in the network its architecture describes")


def test_an_unknown_layout_is_one_line(tmp_path):
    folder = copy_weights(tmp_path, "px32")
    sd = torch.load(folder / "D.pth", weights_only=True)
    sd["blocks.9.0.conv1.weight"] = sd.pop("blocks.3.0.conv1.weight")
    torch.save(sd, folder / "D.pth")
    with pytest.raises(CheckpointError) as error:
        read(folder)
    assert "D.pth: not a BigGAN-PyTorch layout ganforge knows" in one_line(error)
    assert "missing blocks.3.0.conv1.weight" in one_line(error)
    assert "unexpected blocks.9.0.conv1.weight" in one_line(error)
    (folder / "state_dict.pth").unlink()  # and read off the shapes: a G with 7 blocks
    sd = torch.load(folder / "G.pth", weights_only=True)
    sd.update({f"blocks.{i}.0.conv1.weight": torch.zeros(1) for i in range(3, 7)})
    torch.save(sd, folder / "G.pth")
    (folder / "G_ema.pth").unlink()
    with pytest.raises(CheckpointError, match="G.pth: not a BigGAN-PyTorch layout ganforge knows \\(a generator with "
                                              "7 blocks"):
        read(folder)


def test_an_unsupported_network_is_refused(tmp_path):
    folder = copy_weights(tmp_path, "px32")
    with torch.serialization.safe_globals([(obj, n) for n, obj in biggan_pytorch._INERT.items()]):
        state = torch.load(folder / "state_dict.pth", weights_only=True)
    state["config"] = {k: v for k, v in state["config"].items() if isinstance(v, (str, int, float, bool))}
    state["config"]["model"] = "BigGANdeep"
    state.pop("best_IS"), state.pop("best_FID")
    torch.save(state, folder / "state_dict.pth")
    with pytest.raises(CheckpointError) as error:
        read(folder)
    assert "model 'BigGANdeep' has no ganforge network" in one_line(error)


class Payload:
    """Creates a file when unpickled (if anything ran it)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def test_a_pickle_with_code_is_refused_and_nothing_runs(tmp_path):
    folder = copy_weights(tmp_path, "px32")
    marker = tmp_path / "ran"
    sd = torch.load(folder / "G.pth", weights_only=True)
    torch.save({**sd, "payload": Payload(marker)}, folder / "G.pth")
    with pytest.raises(CheckpointError) as error:
        read(folder)
    assert "G.pth was refused: it holds" in one_line(error) and "nothing from it was run" in one_line(error)
    assert not marker.exists()


def test_a_legacy_state_dict_pth_with_code_is_refused_and_nothing_runs(tmp_path):
    """state_dict.pth in the pre-1.6 format goes through ganforge's own restricted unpickler."""
    folder = copy_weights(tmp_path, "px128")
    marker = tmp_path / "ran"
    with open(folder / "state_dict.pth", "wb") as f:
        for value in (biggan_pytorch._LEGACY_MAGIC, 1001, {"protocol_version": 1001}):
            pickle.dump(value, f, protocol=2)
        pickle.dump({"config": {"G_ch": 4}, "payload": Payload(marker)}, f, protocol=2)
    with pytest.raises(CheckpointError) as error:
        read(folder)
    assert "state_dict.pth was refused: it holds" in one_line(error) and ".system," in one_line(error)
    assert not marker.exists()


def test_a_folder_with_only_suffixed_sets_names_them(tmp_path):
    folder = copy_weights(tmp_path, "px32", suffix="_best0")
    with pytest.raises(CheckpointError) as error:
        read(folder)
    assert "no G.pth or G_ema.pth" in one_line(error) and "it has the sets best0" in one_line(error)
    assert read(folder / "G_ema_best0.pth").data_shape["resolution"] == 32  # a file of the set reads it


def test_a_folder_without_biggan_files_is_refused(tmp_path):
    with pytest.raises(CheckpointError, match="no G.pth or G_ema.pth"):
        read(tmp_path)
    (tmp_path / "model.pt").write_bytes(b"x")
    with pytest.raises(CheckpointError, match="not a BigGAN-PyTorch weights folder or file"):
        read(tmp_path / "model.pt")
