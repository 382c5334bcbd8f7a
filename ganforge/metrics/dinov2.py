"""DINOv2's ViT (Oquab et al. 2023) for FD_DINOv2 (Stein et al. 2023): CLS features of images.

The network is facebookresearch/dinov2's `DinoVisionTransformer` as its torch hub model
`dinov2_vitl14` builds it (no register tokens, LayerScale, GELU MLP, LayerNorm eps 1e-6, the
patch position embeddings of its 518 px training resolution resized bicubically to the input's
patch grid with the reference's 0.1 offset). It reads the official state dict
(`dinov2_vitl14_pretrain.pth`) as it is; its sizes (width, depth, patch, position grid) come from
the tensors' shapes, so smaller DINOv2 ViTs load too. Heads are 64 wide in every DINOv2 ViT.

Inputs follow dgm-eval, the code of Stein et al.: each 8-bit RGB image resized to 224x224 by PIL's
bicubic filter (torchvision's Resize on a PIL image), scaled to [0, 1], ImageNet mean and std.
The feature is the normalised CLS token (1,024-d for ViT-L/14).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ganforge.errors import GanforgeError
from ganforge.metrics.features import FeatureExtractor
from ganforge.metrics.resize import pil_bicubic_uint8

WEIGHTS_FILE = "dinov2_vitl14_pretrain.pth"
WEIGHTS_URL = f"https://dl.fbaipublicfiles.com/dinov2/dinov2_vitl14/{WEIGHTS_FILE}"
INPUT_SIZE = 224
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
HEAD_DIM = 64
POS_OFFSET = 0.1  # the reference's `interpolate_offset`


class _Scale(nn.Module):
    """LayerScale: a learned per-channel gain on a residual branch."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gamma


class _Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        n, tokens, dim = x.shape
        q, k, v = self.qkv(x).view(n, tokens, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(n, tokens, dim))


class _MLP(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class _Block(nn.Module):
    """Pre-norm transformer block with LayerScale on both residual branches."""

    def __init__(self, dim: int, heads: int, hidden: int) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim, eps=1e-6), nn.LayerNorm(dim, eps=1e-6)
        self.attn, self.mlp = _Attention(dim, heads), _MLP(dim, hidden)
        self.ls1, self.ls2 = _Scale(dim), _Scale(dim)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class _PatchEmbed(nn.Module):
    def __init__(self, patch: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, dim, kernel_size=patch, stride=patch)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class DINOv2ViT(nn.Module):
    """Normalised images (N, 3, H, W), sides a multiple of the patch -> CLS features (N, dim).
    Parameter names are the reference's, so its state dicts load unchanged."""

    def __init__(self, dim: int = 1024, depth: int = 24, patch: int = 14, grid: int = 37,
                 mlp_hidden: int | None = None) -> None:
        super().__init__()
        self.patch, self.grid = patch, grid
        self.patch_embed = _PatchEmbed(patch, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, grid * grid + 1, dim))
        self.mask_token = nn.Parameter(torch.zeros(1, dim))  # used in training only; kept so state dicts match
        self.blocks = nn.ModuleList(_Block(dim, dim // HEAD_DIM, mlp_hidden or 4 * dim) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)

    @classmethod
    def from_state_dict(cls, state: dict[str, Tensor]) -> DINOv2ViT:
        """A ViT sized by the state dict's tensors, with those weights."""
        dim = state["cls_token"].shape[-1]
        depth = len({k.split(".")[1] for k in state if k.startswith("blocks.")})
        net = cls(dim, depth, state["patch_embed.proj.weight"].shape[-1],
                  math.isqrt(state["pos_embed"].shape[1] - 1), state["blocks.0.mlp.fc1.weight"].shape[0])
        net.load_state_dict(state)
        return net.eval().requires_grad_(False)

    def position_embedding(self, rows: int, cols: int) -> Tensor:
        """The class token's embedding and the patch grid's, resized bicubically to rows x cols."""
        pos = self.pos_embed.float()
        if rows * cols == self.grid * self.grid and rows == cols:
            return pos
        dim = pos.shape[-1]
        patches = pos[:, 1:].reshape(1, self.grid, self.grid, dim).permute(0, 3, 1, 2)
        # The reference asks for a scale factor a little above the exact ratio, so that rounding
        # down in the interpolation cannot lose a row (its `interpolate_offset`).
        scale = ((rows + POS_OFFSET) / self.grid, (cols + POS_OFFSET) / self.grid)
        patches = F.interpolate(patches, scale_factor=scale, mode="bicubic", antialias=False)
        return torch.cat([pos[:, :1], patches.permute(0, 2, 3, 1).reshape(1, rows * cols, dim)], dim=1)

    def forward(self, x: Tensor) -> Tensor:
        rows, cols = x.shape[2] // self.patch, x.shape[3] // self.patch
        tokens = self.patch_embed(x)
        tokens = torch.cat([self.cls_token.expand(len(x), -1, -1), tokens], dim=1)
        tokens = tokens + self.position_embedding(rows, cols).to(tokens.dtype)
        for block in self.blocks:
            tokens = block(tokens)
        return self.norm(tokens)[:, 0]


def preprocess(images: Tensor) -> Tensor:
    """uint8 images (N, C, H, W) -> dgm-eval's DINOv2 input: 224x224 PIL bicubic, ImageNet-normalised."""
    x = pil_bicubic_uint8(images, INPUT_SIZE).float() / 255.0
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (x - mean) / std


class DINOv2Extractor(FeatureExtractor):
    """uint8 images -> DINOv2 CLS features (no logits)."""

    def __init__(self, state: dict[str, Tensor], source: str) -> None:
        super().__init__()
        self.net = DINOv2ViT.from_state_dict(state)
        self.name = f"dinov2-cls ({source}, 224 px PIL bicubic)"

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor | None]:
        device = next(self.net.parameters()).device
        return self.net(preprocess(images).to(device)), None


def default_weights_path() -> Path:
    """Where torch hub keeps the DINOv2 ViT-L/14 weights (`torch.hub.load` puts them there)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / WEIGHTS_FILE


def load_dinov2(path: str | None = None, metric: str = "fd_dinov2") -> DINOv2Extractor:
    """The DINOv2 extractor from `path` or the torch hub cache; a missing or foreign file is one
    line that starts with the metric that needs it."""
    target = Path(path).expanduser() if path else default_weights_path()
    if not target.is_file():
        where = "eval.dinov2_weights (--dinov2-weights)" if path else "the torch hub cache"
        raise GanforgeError(f"{metric}: the DINOv2 ViT-L/14 weights are missing: no file {target} ({where}); "
                            f"download {WEIGHTS_URL} and place it at {default_weights_path()}, or give its path "
                            "as eval.dinov2_weights (ganforge eval: --dinov2-weights)")
    try:
        state = torch.load(target, map_location="cpu", weights_only=True)
    except Exception as e:  # a damaged or foreign file
        raise GanforgeError(f"{metric}: {target} is not a readable weights file ({type(e).__name__})") from None
    needed = ("cls_token", "pos_embed", "patch_embed.proj.weight", "blocks.0.mlp.fc1.weight", "norm.weight")
    if not isinstance(state, dict) or any(k not in state for k in needed):
        raise GanforgeError(f"{metric}: {target} is not a DINOv2 ViT state dict ({WEIGHTS_FILE})")
    try:
        return DINOv2Extractor(state, target.name)
    except RuntimeError as e:  # keys or shapes that do not fit
        raise GanforgeError(f"{metric}: {target} does not fit DINOv2's ViT ({str(e).splitlines()[0]})") from None
