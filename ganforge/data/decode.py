"""One image file -> one square training image: the single decoding path of every image loader
(image_folder, zip, hf), of `ganforge dataset` and of `ganforge project --target`.

Each kind of file is handled on purpose:
- the first frame of an animated GIF/WebP (or multi-page TIFF), with a note saying so;
- EXIF orientation applied, as a phone shows the photo;
- 16-bit pixels scaled to 8 bits (65535 -> 255), never clipped;
- transparency composited on a background colour (`alpha: composite`) or refused (`alpha: refuse`);
- palette, bilevel, CMYK and greyscale files converted to the channels asked for;
- then framed to a square: `center` (StyleGAN2-ADA dataset_tool's `center-crop`), `center-wide`
  (its `center-crop-wide`), `pad` (letterbox) or `stretch`.

A file that cannot be used raises `BadImage` with a one-line reason (an empty file, a truncated
one, pixels of a depth ganforge does not scale); callers skip it or stop, as their options say.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from typing import Annotated, Any, Literal, get_args

import numpy as np

from ganforge.params import Range

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
Channels = Literal[1, 3]
# center: the central square; center-wide: a centred strip of `aspect` letterboxed on black (StyleGAN2-ADA's
# center-crop-wide); pad: the whole image letterboxed; stretch: resized to the square whatever its shape.
Crop = Literal["center", "center-wide", "pad", "stretch"]
PadMode = Literal["constant", "edge", "reflect"]
Alpha = Literal["composite", "refuse"]
CROPS, PAD_MODES, ALPHAS = get_args(Crop), get_args(PadMode), get_args(Alpha)
Byte = Annotated[int, Range(ge=0, le=255)]
Colour = tuple[Byte, Byte, Byte]
# center-wide's strip, width : height. 4/3 is StyleGAN2-ADA's LSUN Car recipe (--width=512 --height=384).
Aspect = Annotated[float, Range(ge=1.0, le=16.0)]
WIDE_ASPECT = 4 / 3
WHITE: tuple[int, int, int] = (255, 255, 255)

# PIL modes that carry transparency, and those whose pixels are wider than 8 bits.
_ALPHA_MODES = ("RGBA", "LA", "PA", "La", "RGBa")
_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N")
_ORIENTATION = 0x0112  # the EXIF tag


@dataclass(frozen=True)
class ImageOptions:
    """How an image file becomes a training image: its side, channels, framing and transparency."""

    resolution: int
    channels: int = 3
    crop: str = "center"
    aspect: float = WIDE_ASPECT  # center-wide: the strip's width / height
    pad_mode: str = "constant"  # pad: how the letterbox is filled (constant: pad_value | edge | reflect)
    pad_value: int = 0  # pad with pad_mode constant: the grey level of the bars
    alpha: str = "composite"  # composite on `background`, or refuse files with transparent pixels
    background: tuple[int, int, int] = WHITE


@dataclass(frozen=True)
class Decoded:
    """A decoded image: (side, side, channels) uint8 pixels, whether any part was enlarged, and
    notes for the user (e.g. the first frame of an animation was used)."""

    pixels: np.ndarray
    upscaled: bool
    notes: tuple[str, ...] = ()


class BadImage(Exception):
    """A file that cannot become a training image; `str()` is the one-line reason."""


class RefusedImage(BadImage):
    """A readable file that the options refuse (`alpha: refuse`): an error, never a skipped file."""


def decode(source: Any, options: ImageOptions) -> Decoded:
    """A path, binary file object or PIL image -> `Decoded`, or BadImage with the reason."""
    from PIL import Image

    notes: list[str] = []
    img = _eight_bit(source) if isinstance(source, Image.Image) else _open(source, notes)
    img = _opaque(img, options)
    try:
        img = img.convert("L" if options.channels == 1 else "RGB")  # palette, bilevel, CMYK, YCbCr...
    except ValueError as e:  # a mode PIL cannot convert (LAB, for one)
        raise BadImage(f"cannot convert {img.mode} pixels ({e})") from None
    framed, upscaled = frame(img, options)
    pixels = np.array(framed, dtype=np.uint8)  # writable: torch.from_numpy shares it
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    return Decoded(pixels, upscaled, tuple(notes))


def _open(source: Any, notes: list[str]) -> Any:
    """The file's first frame, fully read (16-bit pixels scaled to 8) and turned upright (EXIF orientation)."""
    from PIL import Image, ImageOps

    try:
        with Image.open(source) as img:
            frames = getattr(img, "n_frames", 1)
            img.load()  # frame 0: Image.open leaves an animation there
            if frames > 1:
                notes.append(f"{frames} frames (animated): the first is used")
            img = _eight_bit(img)  # while img.format is known
            if img.getexif().get(_ORIENTATION, 1) != 1:
                img = ImageOps.exif_transpose(img)
            return img
    except BadImage:
        raise
    except Exception as e:  # PIL raises many types for damaged or foreign files
        raise BadImage(_reason(e, source)) from None


def _reason(error: Exception, source: Any) -> str:
    """One line saying why a file could not be decoded."""
    size = None
    if isinstance(source, (str, os.PathLike)):
        try:
            size = os.path.getsize(source)
        except OSError:
            pass
    elif isinstance(source, io.BytesIO):
        size = source.getbuffer().nbytes
    if size == 0:
        return "empty file (0 bytes)"
    if isinstance(error, FileNotFoundError):
        return "no such file"
    from PIL import UnidentifiedImageError

    if isinstance(error, UnidentifiedImageError):  # its message names a memory address, not the file
        return "cannot decode (not an image file that PIL can read)"
    message = " ".join(str(error).split())[:160] or type(error).__name__
    if "truncated" in message.lower() or isinstance(error, EOFError):
        return f"truncated ({message})"
    return f"cannot decode ({message})"


def _eight_bit(img: Any) -> Any:
    """16-bit greyscale scaled to 8 bits (round(v / 257): 65535 -> 255); 8-bit modes as they are."""
    from PIL import Image

    wide = img.mode in _SIXTEEN_BIT or (img.mode == "I" and img.format == "PNG")  # PNG holds at most 16 bits
    if wide:
        values = np.asarray(img).astype(np.uint32)
        return Image.fromarray(((values + 128) // 257).clip(0, 255).astype(np.uint8))
    if img.mode in ("I", "F"):
        depth = "32-bit integer" if img.mode == "I" else "floating-point"
        raise BadImage(f"{depth} pixels; convert the file to 8 or 16 bits")
    return img


def _opaque(img: Any, options: ImageOptions) -> Any:
    """Transparent pixels composited on the background colour, or refused (`alpha: refuse`)."""
    from PIL import Image

    if img.mode not in _ALPHA_MODES and "transparency" not in img.info:
        return img
    rgba = img.convert("RGBA")
    if rgba.getchannel("A").getextrema()[0] == 255:
        return rgba.convert("RGB")  # an alpha channel with nothing transparent in it
    if options.alpha == "refuse":
        raise RefusedImage(f"has transparent pixels (mode {img.mode})")
    background = Image.new("RGBA", rgba.size, (*options.background, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


# --------------------------------------------------------------------------------------------
# Framing: any w x h -> resolution x resolution
# --------------------------------------------------------------------------------------------


def frame(img: Any, options: ImageOptions) -> tuple[Any, bool]:
    """A PIL image framed to the square of `options.crop` (Lanczos resampling); and whether it
    was enlarged to get there."""
    side = options.resolution
    w, h = img.size
    if options.crop == "center":
        # StyleGAN2-ADA dataset_tool's center-crop: the central min(w, h) square, then resized.
        s = min(w, h)
        left, top = (w - s) // 2, (h - s) // 2
        return _resize(img.crop((left, top, left + s, top + s)), side, side), s < side
    if options.crop == "center-wide":
        return _center_wide(img, side, options.aspect)
    if options.crop == "pad":
        return _pad(img, options)
    return _resize(img, side, side), min(w, h) < side


def _resize(img: Any, w: int, h: int) -> Any:
    from PIL import Image

    return img if img.size == (w, h) else img.resize((w, h), Image.Resampling.LANCZOS)


def _center_wide(img: Any, side: int, aspect: float) -> tuple[Any, bool]:
    """StyleGAN2-ADA's center-crop-wide: a centred strip of width/height `aspect`, resized to
    side x round(side / aspect) and letterboxed on black. The strip is cut in the file's own
    pixels (the reference measures it in output pixels, which is the same for files `side` wide)."""
    from PIL import Image

    w, h = img.size
    strip_h = max(1, round(side / aspect))
    if w / h > aspect:  # wider than the strip: keep the full height, cut the sides
        cw, ch = max(1, round(h * aspect)), h
    else:  # taller: keep the full width, cut the top and bottom
        cw, ch = w, max(1, round(w / aspect))
    left, top = (w - cw) // 2, (h - ch) // 2
    strip = _resize(img.crop((left, top, left + cw, top + ch)), side, strip_h)
    canvas = Image.new(img.mode, (side, side), 0)
    canvas.paste(strip, (0, (side - strip_h) // 2))
    return canvas, cw < side


def _pad(img: Any, options: ImageOptions) -> tuple[Any, bool]:
    """The whole image with its longer side at `resolution`, letterboxed to a square."""
    from PIL import Image

    side = options.resolution
    w, h = img.size
    scale = side / max(w, h)
    nw, nh = max(1, min(side, round(w * scale))), max(1, min(side, round(h * scale)))
    pixels = np.asarray(_resize(img, nw, nh))
    top, left = (side - nh) // 2, (side - nw) // 2
    widths = [(top, side - nh - top), (left, side - nw - left)] + [(0, 0)] * (pixels.ndim - 2)
    if options.pad_mode == "constant":
        padded = np.pad(pixels, widths, mode="constant", constant_values=options.pad_value)
    else:
        padded = np.pad(pixels, widths, mode=options.pad_mode)
    return Image.fromarray(padded), max(w, h) < side
