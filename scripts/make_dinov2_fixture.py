"""Make tests/fixtures/dinov2_reference.pt: facebookresearch/dinov2's own ViT (random weights) on a
few images, preprocessed as dgm-eval does (torchvision Resize 224 bicubic on the PIL image,
ToTensor, ImageNet Normalize). ganforge's DINOv2 extractor must give the same CLS features.

    python scripts/make_dinov2_fixture.py /path/to/dinov2-checkout [--check-large]

The fixture's ViT is small (width 64, 2 blocks, one head of 64) so that its weights fit in the
repository; it is the reference's DinoVisionTransformer with the settings of its ViT-L/14 hub model
(patch 14, 518 px position grid resized to the input, LayerScale, MLP, no registers).
--check-large also builds the real ViT-L/14 architecture with random weights and prints how far
ganforge's features are from the reference's (nothing is written for it).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import torch

OUT = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "dinov2_reference.pt"


def images() -> list[np.ndarray]:
    """Test images of several sizes (smaller and larger than 224, one greyscale)."""
    rng = np.random.default_rng(0)
    smooth = np.kron(rng.integers(0, 256, (8, 8, 3)), np.ones((4, 4, 1))).astype(np.uint8)  # 32 px blocks
    return [smooth, rng.integers(0, 256, (32, 32, 3), dtype=np.uint8),
            rng.integers(0, 256, (240, 240, 3), dtype=np.uint8),
            np.repeat(rng.integers(0, 256, (64, 64, 1), dtype=np.uint8), 3, axis=2)]


def reference_inputs(arrays: list[np.ndarray]) -> torch.Tensor:
    """dgm-eval's DINOv2Encoder.transform (clean_resize False) on each PIL image."""
    import torchvision.transforms as TF
    from PIL import Image

    transform = TF.Compose([TF.Resize((224, 224), TF.InterpolationMode.BICUBIC), TF.ToTensor(),
                            TF.Normalize(np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225]))])
    return torch.stack([transform(Image.fromarray(a)) for a in arrays]).float()


def randomise(model: torch.nn.Module, seed: int) -> None:
    """Random values in every tensor (LayerScale gains, norms, tokens too, not only the init's)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(torch.randn(p.shape, generator=g) * (0.5 if p.ndim > 1 else 0.2) + (1.0 if "norm" in name else 0))


def small_vit() -> torch.nn.Module:
    """The reference's ViT class with the hub ViT-L/14's settings (`_make_dinov2_model`, `vit_large`),
    only narrower and shallower."""
    from functools import partial

    from dinov2.layers import MemEffAttention, NestedTensorBlock
    from dinov2.models.vision_transformer import DinoVisionTransformer

    return DinoVisionTransformer(img_size=518, patch_size=14, init_values=1.0, ffn_layer="mlp", block_chunks=0,
                                 num_register_tokens=0, interpolate_antialias=False, interpolate_offset=0.1,
                                 embed_dim=64, depth=2, num_heads=1, mlp_ratio=4,
                                 block_fn=partial(NestedTensorBlock, attn_class=MemEffAttention))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkout", type=Path, help="a checkout of github.com/facebookresearch/dinov2")
    parser.add_argument("--check-large", action="store_true", help="also compare on ViT-L/14 (random weights)")
    args = parser.parse_args()
    os.environ.setdefault("XFORMERS_DISABLED", "1")  # the reference's plain PyTorch attention, as on a CPU
    sys.path.insert(0, str(args.checkout.resolve()))
    from dinov2.hub.backbones import _make_dinov2_model

    arrays = images()
    inputs = reference_inputs(arrays)
    model = small_vit().eval()
    randomise(model, 0)
    with torch.no_grad():
        features = model(inputs)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": state, "images": [torch.from_numpy(a.copy()) for a in arrays],
                "features": features}, OUT)
    print(f"wrote {OUT} ({OUT.stat().st_size / 1e3:.0f} kB): {len(arrays)} images, features {tuple(features.shape)}")

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from ganforge.metrics.dinov2 import DINOv2Extractor

    ours = DINOv2Extractor(state, "fixture").eval()
    with torch.no_grad():
        got = torch.cat([ours(torch.from_numpy(a).permute(2, 0, 1)[None])[0] for a in arrays])
    print(f"small ViT: max |ganforge - reference| = {(got - features).abs().max():.3g} "
          f"(features up to {features.abs().max():.3g})")
    if args.check_large:
        large = _make_dinov2_model(arch_name="vit_large", pretrained=False).eval()
        randomise(large, 1)
        with torch.no_grad():
            expected = large(inputs[:2])
            got = DINOv2Extractor(large.state_dict(), "random ViT-L/14").eval()(
                torch.stack([torch.from_numpy(a).permute(2, 0, 1) for a in arrays[:2]]))[0]
        print(f"ViT-L/14: max |ganforge - reference| = {(got - expected).abs().max():.3g} "
              f"(features up to {expected.abs().max():.3g})")


if __name__ == "__main__":
    main()
