"""BigGAN (Brock et al. 2019) as ajbrock/BigGAN-PyTorch builds it (`BigGAN.py`, `layers.py`).

The module tree, parameter and buffer names are the reference's, so its `G.pth`, `D.pth` and
`G_ema.pth` load one to one: `shared` (the class embedding), `linear`, `blocks.i.0` (residual
block) and `blocks.i.1` (self-attention `theta/phi/g/o/gamma`), `output_layer`; conditional
BatchNorm with gains and biases from spectrally normalised linear layers (`G_shared`) or per-class
embeddings (without it); D's `linear` and projection `embed`. Spectral normalisation is the
reference's own, built in: power iteration on buffers `u0, u1, ...` (one per singular value,
Gram-Schmidt between them), the estimates in `sv0, ...`, one step per forward pass, the vectors
updated only in training mode. Widths, blocks and attention follow its `G_arch` / `D_arch`
tables, including their quirks (D_arch[32] says 16 for every block's resolution, so attention
"at 16" follows all four of its blocks). 16 px is ganforge's extrapolation of the 32 px layout.

Config parameters keep the reference's names and meanings (its flag in brackets): `ch` [G_ch,
D_ch], `dim_z`, `shared` [G_shared], `shared_dim` (0: dim_z), `hier`, `attention` [G_attn,
D_attn: "64" or "32_64" there, a list of resolutions here], `init` [G_init, D_init], `num_svs`
[num_G_SVs], `num_sv_itrs` [num_G_SV_itrs], `sn_eps` [SN_eps], `bn_eps` [BN_eps],
`cross_replica`, `mybn`, `wide` [D_wide].
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Annotated, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ganforge.accepts import Accepts
from ganforge.models import stages
from ganforge.params import Range
from ganforge.registry import DISCRIMINATORS, GENERATORS

Width = Annotated[int, Range(ge=1, le=1024)]
Resolutions = tuple[Annotated[int, Range(ge=4)], ...] | None
Init = Literal["ortho", "N02", "xavier", "glorot"]
SingularValues = Annotated[int, Range(ge=1, le=16)]
Iterations = Annotated[int, Range(ge=1, le=100)]
Epsilon = Annotated[float, Range(gt=0, lt=1)]
DEFAULT_ATTENTION = 64  # the reference's G_attn / D_attn default, '64'
BN_MOMENTUM = 0.1  # the reference's, fixed

# BigGAN.py's G_arch: channels into each block in multiples of ch (the 4x4 map's first), out of
# each block, and each block's output resolution (which `attention` is matched against).
G_ARCH: dict[int, tuple[list[int], list[int], list[int]]] = {
    16: ([4, 4], [4, 4], [8, 16]),  # not in BigGAN: the 32 px layout, one block fewer
    32: ([4, 4, 4], [4, 4, 4], [8, 16, 32]),
    64: ([16, 16, 8, 4], [16, 8, 4, 2], [8, 16, 32, 64]),
    128: ([16, 16, 8, 4, 2], [16, 8, 4, 2, 1], [8, 16, 32, 64, 128]),
    256: ([16, 16, 8, 8, 4, 2], [16, 8, 8, 4, 2, 1], [8, 16, 32, 64, 128, 256]),
}
# D_arch: channels out of each block (multiples of ch; the first block takes the image), which
# blocks downsample, and the "resolution" the table gives each block (attention is matched
# against it; at 32 px it is 16 for all four blocks, whatever they output).
D_ARCH: dict[int, tuple[list[int], list[bool], list[int]]] = {
    16: ([4, 4, 4], [True, False, False], [8, 8, 8]),  # not in BigGAN: the 32 px layout, one block fewer
    32: ([4, 4, 4, 4], [True, True, False, False], [16, 16, 16, 16]),
    64: ([1, 2, 4, 8, 16], [True] * 4 + [False], [32, 16, 8, 4, 4]),
    128: ([1, 2, 4, 8, 16, 16], [True] * 5 + [False], [64, 32, 16, 8, 4, 4]),
    256: ([1, 2, 4, 8, 8, 16, 16], [True] * 6 + [False], [128, 64, 32, 16, 8, 4, 4]),
}
IMAGES = Accepts(images=True, vectors=False, min_resolution=16, max_resolution=256, powers_of_two=True)  # G_ARCH's

# Parameters of ganforge's earlier biggan (before it took BigGAN-PyTorch's layout), for the
# config parser's message: a config or checkpoint that names them was written for that network.
EARLIER = ("the biggan networks now follow BigGAN-PyTorch's layout and parameter names; a checkpoint of "
           "the earlier biggan cannot be loaded (retrain it)")
RETIRED_G = {"latent_dim": f"use dim_z; {EARLIER}", "base_width": f"use ch (G_ch); {EARLIER}",
             "max_width": f"no longer exists (the reference does not cap widths); {EARLIER}",
             "hierarchical": f"use hier; {EARLIER}",
             "attention_resolution": f"use attention (a list of resolutions); {EARLIER}"}
RETIRED_D = {"base_width": f"use ch (D_ch); {EARLIER}", "max_width": RETIRED_G["max_width"],
             "attention_resolution": RETIRED_G["attention_resolution"]}


def attention_flags(table: list[int], attention: Sequence[int] | None, channels: list[int]) -> list[bool]:
    """Which blocks self-attention follows: those whose table resolution is listed (None: the
    reference's default, 64, where a block has it; empty: none). A listed resolution that no
    block has is an error rather than silently no attention."""
    if attention is None:
        attention = [DEFAULT_ATTENTION] if DEFAULT_ATTENTION in table else []
    for r in attention:
        if r not in table:
            listed = ", ".join(str(t) for t in dict.fromkeys(table))
            raise ValueError(f"attention {r} matches no block; blocks are at {listed} (an empty list: no attention)")
    flags = [r in attention for r in table]
    for flag, c, r in zip(flags, channels, table):
        if flag and c < 8:
            raise ValueError(f"attention at {r} needs at least 8 channels there (it has {c}); raise ch")
    return flags


def init_weights(module: nn.Module, init: str) -> None:
    """BigGAN-PyTorch's initialisation of every conv, linear and embedding weight: `ortho`,
    `N02` (N(0, 0.02)) or `xavier` / `glorot` (uniform); biases keep PyTorch's default."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear, nn.Embedding)):
            if init == "ortho":
                nn.init.orthogonal_(m.weight)
            elif init == "N02":
                nn.init.normal_(m.weight, 0.0, 0.02)
            else:
                nn.init.xavier_uniform_(m.weight)


# --------------------------------------------------------------------------------------------
# Spectral normalisation (layers.py: SN, SNConv2d, SNLinear, SNEmbedding)
# --------------------------------------------------------------------------------------------


def _orthogonalise(x: Tensor, ys: list[Tensor]) -> Tensor:
    """x minus its projections on each of `ys` in turn (Gram-Schmidt)."""
    for y in ys:
        x = x - torch.mm(y, x.t()) * y / torch.mm(y, y.t())
    return x


def power_iteration(W: Tensor, us: list[Tensor], update: bool, eps: float) -> list[Tensor]:
    """One power-iteration step per singular vector of the (out, in) matrix W; returns the
    singular-value estimates, differentiable in W. `update`: write the new vectors into `us`."""
    svs: list[Tensor] = []
    vs: list[Tensor] = []
    new_us: list[Tensor] = []
    for i, u in enumerate(us):
        with torch.no_grad():
            v = F.normalize(_orthogonalise(torch.matmul(u, W), vs), eps=eps)
            vs.append(v)
            u = F.normalize(_orthogonalise(torch.matmul(v, W.t()), new_us), eps=eps)
            new_us.append(u)
            if update:
                us[i].copy_(u)
        svs.append(torch.squeeze(torch.matmul(torch.matmul(v, W.t()), u.t())))
    return svs


class SpectralNorm:
    """BigGAN-PyTorch's spectral norm, mixed into a layer with a `weight`: buffers u0.. (left
    singular vectors, (1, outputs)) and sv0.. (the estimates, for logging); the weight is
    divided by the first estimate on every forward pass."""

    weight: Tensor
    training: bool
    register_buffer: Callable[..., None]

    def init_spectral_norm(self, num_svs: int, num_itrs: int, outputs: int, eps: float) -> None:
        """The buffers of `num_svs` singular vectors; `num_itrs` steps per forward pass."""
        self.num_svs, self.num_itrs, self.sn_eps = num_svs, num_itrs, eps
        for i in range(num_svs):
            self.register_buffer(f"u{i}", torch.randn(1, outputs))
            self.register_buffer(f"sv{i}", torch.ones(1))

    def normalized_weight(self) -> Tensor:
        """The weight over its largest singular value, estimated by power iteration (in float32,
        also under autocast); the vectors move on only in training mode."""
        us = [getattr(self, f"u{i}") for i in range(self.num_svs)]
        with torch.autocast(self.weight.device.type, enabled=False):
            W = self.weight.float().flatten(1)
            for _ in range(self.num_itrs):
                svs = power_iteration(W, us, update=self.training, eps=self.sn_eps)
            if self.training:
                with torch.no_grad():
                    for i, sv in enumerate(svs):
                        getattr(self, f"sv{i}").copy_(sv)
            return self.weight / svs[0]


class SNConv2d(nn.Conv2d, SpectralNorm):
    """A conv layer with BigGAN-PyTorch's spectral norm."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, padding: int = 1,
                 bias: bool = True, num_svs: int = 1, num_itrs: int = 1, eps: float = 1e-12) -> None:
        nn.Conv2d.__init__(self, in_channels, out_channels, kernel_size, padding=padding, bias=bias)
        self.init_spectral_norm(num_svs, num_itrs, out_channels, eps)

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.normalized_weight(), self.bias, self.stride, self.padding, self.dilation, self.groups)


class SNLinear(nn.Linear, SpectralNorm):
    """A linear layer with BigGAN-PyTorch's spectral norm."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, num_svs: int = 1,
                 num_itrs: int = 1, eps: float = 1e-12) -> None:
        nn.Linear.__init__(self, in_features, out_features, bias)
        self.init_spectral_norm(num_svs, num_itrs, out_features, eps)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.normalized_weight(), self.bias)


class SNEmbedding(nn.Embedding, SpectralNorm):
    """An embedding with BigGAN-PyTorch's spectral norm (of the whole table; its vectors have
    one entry per class)."""

    def __init__(self, num_embeddings: int, embedding_dim: int, num_svs: int = 1, num_itrs: int = 1,
                 eps: float = 1e-12) -> None:
        nn.Embedding.__init__(self, num_embeddings, embedding_dim)
        self.init_spectral_norm(num_svs, num_itrs, num_embeddings, eps)

    def forward(self, x: Tensor) -> Tensor:
        return F.embedding(x, self.normalized_weight())


# --------------------------------------------------------------------------------------------
# BatchNorm (layers.py: ccbn, bn, myBN)
# --------------------------------------------------------------------------------------------


class RunningStats(nn.Module):
    """Running statistics as BigGAN-PyTorch keeps them, in buffers `stored_mean` and `stored_var`.
    `momentum`, `track_running_stats` and `reset_running_stats` behave as in torch's BatchNorm
    (momentum None: the cumulative average), so standing statistics can recompute them."""

    track_running_stats = True

    def init_stats(self, channels: int, momentum: float) -> None:
        """Buffers for `channels` channels, updated with `momentum`."""
        self.momentum: float | None = momentum
        self.register_buffer("stored_mean", torch.zeros(channels))
        self.register_buffer("stored_var", torch.ones(channels))
        # Only the cumulative average needs it; not in the reference's state dict.
        self.register_buffer("num_batches_tracked", torch.tensor(0), persistent=False)

    def reset_running_stats(self) -> None:
        """Back to mean 0, variance 1 (as torch's BatchNorm)."""
        self.stored_mean.zero_()
        self.stored_var.fill_(1)
        self.num_batches_tracked.zero_()

    def update_factor(self) -> float:
        """The weight of this batch's statistics in the running ones (counts the batch)."""
        if self.momentum is not None:
            return self.momentum
        self.num_batches_tracked.add_(1)
        return 1.0 / float(self.num_batches_tracked)


class MyBatchNorm(RunningStats):
    """layers.myBN: BatchNorm from the mean of squares minus the squared mean (in float32),
    with buffers stored_mean, stored_var and accumulation_counter (`mybn`)."""

    def __init__(self, channels: int, eps: float = 1e-5, momentum: float = BN_MOMENTUM) -> None:
        super().__init__()
        self.eps = eps
        self.init_stats(channels, momentum)
        # The reference counts standing-statistics passes here; ganforge's standing statistics
        # average into stored_mean / stored_var directly, so it stays as loaded.
        self.register_buffer("accumulation_counter", torch.zeros(1))

    def forward(self, x: Tensor, gain: Tensor, bias: Tensor) -> Tensor:
        if self.training:
            xf = x.float()
            mean = xf.mean((0, 2, 3), keepdim=True)
            var = (xf.pow(2).mean((0, 2, 3), keepdim=True) - mean.pow(2)).to(x.dtype)
            mean = mean.to(x.dtype)
            with torch.no_grad():
                factor = self.update_factor()
                for stored, batch in ((self.stored_mean, mean), (self.stored_var, var)):
                    stored.copy_(stored * (1 - factor) + batch.flatten() * factor)
        else:
            mean, var = self.stored_mean.view(1, -1, 1, 1), self.stored_var.view(1, -1, 1, 1)
        # layers.fused_bn: one scale and one shift.
        scale = torch.rsqrt(var + self.eps) * gain
        shift = mean * scale - bias
        return x * scale - shift


class _Normalization(RunningStats):
    """The statistics part of ccbn and bn: the module's own stored_mean / stored_var (the
    reference's default), a torch BatchNorm2d child `bn` (`cross_replica`; train.sync_batchnorm
    turns it into SyncBatchNorm) or a MyBatchNorm child `bn` (`mybn`)."""

    def init_normalization(self, channels: int, eps: float, cross_replica: bool, mybn: bool) -> None:
        """The statistics layout that the two flags select."""
        self.eps = eps
        self.cross_replica, self.mybn = cross_replica, mybn
        if cross_replica:
            self.bn: nn.Module = nn.BatchNorm2d(channels, eps=eps, momentum=BN_MOMENTUM, affine=False)
        elif mybn:
            self.bn = MyBatchNorm(channels, eps, BN_MOMENTUM)
        else:
            self.init_stats(channels, BN_MOMENTUM)
        # Statistics kept by a child are the child's to reset.
        self.track_running_stats = not (cross_replica or mybn)

    def normalize(self, x: Tensor, gain: Tensor, bias: Tensor) -> Tensor:
        """x normalised, times gain, plus bias (gain and bias broadcast as (N or 1, C, 1, 1))."""
        if self.mybn:
            return self.bn(x, gain, bias)
        if self.cross_replica:
            # The reference's sync_batchnorm adds the gain outside data-parallel training (a bug);
            # ganforge multiplies, as it does within data-parallel training.
            return self.bn(x) * gain + bias
        factor = self.update_factor() if self.training else 0.0
        return F.batch_norm(x, self.stored_mean, self.stored_var, None, None, self.training, factor,
                            self.eps) * gain + bias


class ConditionalBatchNorm(_Normalization):
    """layers.ccbn: BatchNorm with per-sample gains 1 + gain(y) and biases bias(y); y is the
    shared class embedding (plus the block's chunk of z) through spectrally normalised linear
    layers, or the class index through plain embeddings (without the shared embedding)."""

    def __init__(self, channels: int, which_linear: Callable[[int, int], nn.Module], input_size: int,
                 eps: float = 1e-5, cross_replica: bool = False, mybn: bool = False) -> None:
        super().__init__()
        self.gain = which_linear(input_size, channels)
        self.bias = which_linear(input_size, channels)
        self.init_normalization(channels, eps, cross_replica, mybn)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        gain = (1 + self.gain(y)).view(y.size(0), -1, 1, 1)
        bias = self.bias(y).view(y.size(0), -1, 1, 1)
        return self.normalize(x, gain, bias)


class BatchNorm(_Normalization):
    """layers.bn: BatchNorm with learned parameters `gain` and `bias` (G's output layer; the
    blocks of an unconditional G without hierarchical z, which have nothing to condition on)."""

    def __init__(self, channels: int, eps: float = 1e-5, cross_replica: bool = False, mybn: bool = False) -> None:
        super().__init__()
        self.gain = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.init_normalization(channels, eps, cross_replica, mybn)

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        if self.mybn or self.cross_replica:
            return self.normalize(x, self.gain.view(1, -1, 1, 1), self.bias.view(1, -1, 1, 1))
        factor = self.update_factor() if self.training else 0.0
        return F.batch_norm(x, self.stored_mean, self.stored_var, self.gain, self.bias, self.training, factor,
                            self.eps)


# --------------------------------------------------------------------------------------------
# Blocks (layers.py: Attention, GBlock, DBlock)
# --------------------------------------------------------------------------------------------


class Attention(nn.Module):
    """SAGAN's self-attention as BigGAN-PyTorch's layers.Attention: keys and values max-pooled
    by 2, output scaled by `gamma` (starts at 0: the identity)."""

    def __init__(self, ch: int, which_conv: Callable[..., nn.Module]) -> None:
        super().__init__()
        self.ch = ch
        self.theta = which_conv(ch, ch // 8, kernel_size=1, padding=0, bias=False)
        self.phi = which_conv(ch, ch // 8, kernel_size=1, padding=0, bias=False)
        self.g = which_conv(ch, ch // 2, kernel_size=1, padding=0, bias=False)
        self.o = which_conv(ch // 2, ch, kernel_size=1, padding=0, bias=False)
        self.gamma = nn.Parameter(torch.tensor(0.0))

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        n, _, h, w = x.shape
        theta = self.theta(x).reshape(n, self.ch // 8, h * w)
        phi = F.max_pool2d(self.phi(x), [2, 2]).reshape(n, self.ch // 8, h * w // 4)
        g = F.max_pool2d(self.g(x), [2, 2]).reshape(n, self.ch // 2, h * w // 4)
        beta = F.softmax(torch.bmm(theta.transpose(1, 2), phi), -1)
        o = self.o(torch.bmm(g, beta.transpose(1, 2)).reshape(n, self.ch // 2, h, w))
        return self.gamma * o + x


class GBlock(nn.Module):
    """BN-ReLU-upsample-conv-BN-ReLU-conv, plus an upsampled 1x1 conv shortcut."""

    def __init__(self, in_channels: int, out_channels: int, which_conv: Callable[..., nn.Module],
                 which_bn: Callable[[int], nn.Module]) -> None:
        super().__init__()
        self.conv1 = which_conv(in_channels, out_channels)
        self.conv2 = which_conv(out_channels, out_channels)
        self.conv_sc = which_conv(in_channels, out_channels, kernel_size=1, padding=0)  # upsampling: always
        self.bn1 = which_bn(in_channels)
        self.bn2 = which_bn(out_channels)

    def forward(self, x: Tensor, y: Tensor | None) -> Tensor:
        h = F.relu(self.bn1(x, y))
        h = F.interpolate(h, scale_factor=2)
        x = F.interpolate(x, scale_factor=2)
        h = self.conv2(F.relu(self.bn2(self.conv1(h), y)))
        return h + self.conv_sc(x)


class DBlock(nn.Module):
    """(ReLU-)conv-ReLU-conv(-average pool), plus a 1x1 conv shortcut where the shape changes;
    the first block (no pre-activation) pools before its shortcut conv, the others after."""

    def __init__(self, in_channels: int, out_channels: int, which_conv: Callable[..., nn.Module], wide: bool,
                 preactivation: bool, downsample: bool) -> None:
        super().__init__()
        hidden = out_channels if wide else in_channels
        self.conv1 = which_conv(in_channels, hidden)
        self.conv2 = which_conv(hidden, out_channels)
        self.learnable_sc = in_channels != out_channels or downsample
        if self.learnable_sc:
            self.conv_sc = which_conv(in_channels, out_channels, kernel_size=1, padding=0)
        self.preactivation, self.downsample = preactivation, downsample

    def shortcut(self, x: Tensor) -> Tensor:
        if self.preactivation:
            x = self.conv_sc(x) if self.learnable_sc else x
            return F.avg_pool2d(x, 2) if self.downsample else x
        x = F.avg_pool2d(x, 2) if self.downsample else x
        return self.conv_sc(x) if self.learnable_sc else x

    def forward(self, x: Tensor) -> Tensor:
        h = F.relu(x) if self.preactivation else x
        h = self.conv2(F.relu(self.conv1(h)))
        if self.downsample:
            h = F.avg_pool2d(h, 2)
        return h + self.shortcut(x)


def _check_classes(conditional: bool, num_classes: int) -> int:
    if conditional and num_classes < 2:
        raise ValueError(f"conditional needs a labelled data set (this one has {num_classes} classes)")
    return num_classes if conditional else 0


# --------------------------------------------------------------------------------------------
# The networks (BigGAN.py: Generator, Discriminator)
# --------------------------------------------------------------------------------------------


# dim_z 420 splits into the hierarchical z's 3 to 7 chunks (16 to 256 px).
@GENERATORS.register("biggan", accepts=IMAGES, output_range=(-1.0, 1.0),
                     tiny={"ch": 2, "dim_z": 420, "shared_dim": 4, "attention": []})
class BigGANGenerator(nn.Module):
    """BigGAN G (BigGAN-PyTorch): shared class embedding and hierarchical z into conditional BN, self-attention."""

    retired_params = RETIRED_G
    has_spectral_norm = True  # built in: the spectral_norm regularizer refuses it

    def __init__(
        self,
        channels: int,
        resolution: int,
        num_classes: int = 0,
        ch: Width = 64,
        dim_z: Annotated[int, Range(ge=1)] = 120,
        conditional: bool = True,
        shared: bool = True,
        shared_dim: Annotated[int, Range(ge=0)] = 128,
        hier: bool = True,
        attention: Resolutions = None,
        init: Init = "ortho",
        num_svs: SingularValues = 1,
        num_sv_itrs: Iterations = 1,
        sn_eps: Epsilon = 1e-6,
        bn_eps: Epsilon = 1e-5,
        cross_replica: bool = False,
        mybn: bool = False,
    ) -> None:
        """attention: resolutions of the blocks self-attention follows (null: 64 where a block
        has it, as the reference's default; []: none). shared_dim 0: dim_z."""
        super().__init__()
        stages(resolution, IMAGES)  # BigGAN's tables cover 16 (ganforge's extrapolation) to 256 px
        if cross_replica and mybn:
            raise ValueError("cross_replica and mybn are two BatchNorm layouts; choose one")
        self.num_classes = _check_classes(conditional, num_classes)
        self.shared_dim = shared_dim if shared_dim > 0 else dim_z
        self.hier, self.use_shared = hier, bool(self.num_classes) and shared
        in_mult, out_mult, table = G_ARCH[resolution]
        self.widths = [ch * m for m in in_mult[:1] + out_mult]
        slots = len(out_mult) + 1 if hier else 1
        if dim_z % slots:
            raise ValueError(f"dim_z {dim_z} does not split into {slots} equal chunks (hier: one for the linear "
                             f"layer, one per block); BigGAN-PyTorch would use {dim_z // slots * slots}")
        if hier and self.num_classes and not shared:
            raise ValueError("hier needs shared: true (each block's chunk of z joins the shared class embedding)")
        self.latent_dim = dim_z
        self.z_chunk_size = dim_z // slots if hier else 0

        which_conv = functools.partial(SNConv2d, kernel_size=3, padding=1, num_svs=num_svs, num_itrs=num_sv_itrs,
                                       eps=sn_eps)
        which_linear = functools.partial(SNLinear, num_svs=num_svs, num_itrs=num_sv_itrs, eps=sn_eps)
        cond_size = (self.shared_dim if self.use_shared else 0) + self.z_chunk_size
        which_bn: Callable[[int], nn.Module]
        if self.num_classes and not shared:  # per-class gains: plain embeddings of the class index
            which_bn = functools.partial(ConditionalBatchNorm, which_linear=nn.Embedding, input_size=self.num_classes,
                                         eps=bn_eps, cross_replica=cross_replica, mybn=mybn)
        elif cond_size:
            which_bn = functools.partial(ConditionalBatchNorm, which_linear=functools.partial(which_linear, bias=False),
                                         input_size=cond_size, eps=bn_eps, cross_replica=cross_replica, mybn=mybn)
        else:  # unconditional, all of z into the linear layer: nothing to condition on
            which_bn = functools.partial(BatchNorm, eps=bn_eps, cross_replica=cross_replica, mybn=mybn)

        # The reference applies no spectral norm to the shared embedding ("seems to randomly cripple G").
        if self.use_shared:
            self.shared = nn.Embedding(self.num_classes, self.shared_dim)
        self.linear = which_linear(dim_z // slots, self.widths[0] * 16)
        attend = attention_flags(table, attention, self.widths[1:])
        blocks = []
        for i, (c_in, c_out) in enumerate(zip(self.widths, self.widths[1:])):
            block: list[nn.Module] = [GBlock(c_in, c_out, which_conv, which_bn)]
            if attend[i]:
                block.append(Attention(c_out, which_conv))
            blocks.append(nn.ModuleList(block))
        self.blocks = nn.ModuleList(blocks)
        # The output BatchNorm keeps the reference's fixed eps (layers.bn's default), not bn_eps.
        self.output_layer = nn.Sequential(BatchNorm(self.widths[-1], cross_replica=cross_replica, mybn=mybn),
                                          nn.ReLU(), which_conv(self.widths[-1], channels))
        init_weights(self, init)

    def forward(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        if self.num_classes:
            if labels is None:
                raise ValueError("this generator is conditional: pass class labels")
            y: Tensor | None = self.shared(labels) if self.use_shared else labels
        else:
            y = None
        if self.hier:
            zs = torch.split(z, self.z_chunk_size, 1)
            z = zs[0]
            ys: list[Tensor | None] = [chunk if y is None else torch.cat([y, chunk], 1) for chunk in zs[1:]]
        else:
            ys = [y] * len(self.blocks)
        h = self.linear(z).view(z.size(0), -1, 4, 4)
        for blocklist, y_block in zip(self.blocks, ys):
            for block in blocklist:
                h = block(h, y_block)
        return torch.tanh(self.output_layer(h))


@DISCRIMINATORS.register("biggan", accepts=IMAGES, tiny={"ch": 2, "attention": []})
class BigGANDiscriminator(nn.Module):
    """BigGAN D (BigGAN-PyTorch): residual, self-attention, sum pooling, projection of the class embedding."""

    retired_params = RETIRED_D
    has_spectral_norm = True

    def __init__(
        self,
        channels: int,
        resolution: int,
        num_classes: int = 0,
        ch: Width = 64,
        wide: bool = True,
        conditional: bool = True,
        auxiliary_classifier: bool = False,
        attention: Resolutions = None,
        init: Init = "ortho",
        num_svs: SingularValues = 1,
        num_sv_itrs: Iterations = 1,
        sn_eps: Epsilon = 1e-6,
    ) -> None:
        """wide: hidden channels of a block are its output's (BigGAN, SAGAN), not its input's
        (SNGAN's thin D); auxiliary_classifier: an AC-GAN head (ganforge's, not the reference's)."""
        super().__init__()
        stages(resolution, IMAGES)  # BigGAN's tables cover 16 (ganforge's extrapolation) to 256 px
        classes = _check_classes(conditional or auxiliary_classifier, num_classes)
        out_mult, downs, table = D_ARCH[resolution]
        widths = [ch * m for m in out_mult]
        which_conv = functools.partial(SNConv2d, kernel_size=3, padding=1, num_svs=num_svs, num_itrs=num_sv_itrs,
                                       eps=sn_eps)
        sn = {"num_svs": num_svs, "num_itrs": num_sv_itrs, "eps": sn_eps}
        attend = attention_flags(table, attention, widths)
        blocks = []
        for i, (c_in, c_out) in enumerate(zip([channels, *widths], widths)):
            block: list[nn.Module] = [DBlock(c_in, c_out, which_conv, wide, preactivation=i > 0, downsample=downs[i])]
            if attend[i]:
                block.append(Attention(c_out, which_conv))
            blocks.append(nn.ModuleList(block))
        self.blocks = nn.ModuleList(blocks)
        self.linear = SNLinear(widths[-1], 1, **sn)
        self.num_classes = classes if conditional else 0
        if self.num_classes:
            self.embed = SNEmbedding(classes, widths[-1], **sn)
        if auxiliary_classifier:
            self.aux = SNLinear(widths[-1], classes, **sn)
        init_weights(self, init)

    def features(self, x: Tensor) -> Tensor:
        """Sum-pooled features of the last block, (N, channels)."""
        h = x
        for blocklist in self.blocks:
            for block in blocklist:
                h = block(h)
        return torch.sum(F.relu(h), [2, 3])

    def feature_blocks(self) -> list[list[nn.Module]]:
        """Each residual block with the self-attention layer that follows it, from the input side."""
        return [list(group) for group in self.blocks]

    def forward(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        h = self.features(x)
        out = self.linear(h).squeeze(1)
        if self.num_classes:
            if labels is None:
                raise ValueError("this discriminator is conditional: pass class labels")
            out = out + torch.sum(self.embed(labels) * h, 1)  # the projection term
        return out

    def classify(self, x: Tensor) -> Tensor:
        """Class logits of the auxiliary classifier (AC-GAN)."""
        if not hasattr(self, "aux"):
            raise ValueError("this discriminator has no auxiliary classifier")
        return self.aux(self.features(x))
