"""The records of a run's log.jsonl: their keys, spelled here once, and the three kinds of record.

Training writes them (training/upkeep.py, through the builders below); `info`, `runs`, `report`,
the progress line and the TensorBoard mirror read them back through the same names. Logs of old
runs must keep reading, so a key here is added, never renamed. One JSON object a line, each with
STEP, of one of three kinds:

- a training record every `log.every` steps: the losses averaged since the previous one (D_LOSS,
  G_LOSS, and a figure per regularizer under its name, see `regularizer_key`), then the learning
  rates, speed, images seen and, when the data passed over unreadable images, how many;
- an evaluation record: the figures under EVAL, and what they were computed with;
- a rollback record (EVENT: ROLLBACK) where a non-finite loss sent training back to a checkpoint.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

STEP = "step"  # every record: the generator step it was written at

# A training record
D_LOSS = "d_loss"
G_LOSS = "g_loss"
LR_G = "lr_g"
LR_D = "lr_d"
IMG_PER_S = "img_per_s"  # real images through D per second since the previous record
IMAGES_SEEN = "images_seen"
SKIPPED_IMAGES = "skipped_images"  # only once the data passed over an unreadable image
LOSSES = (D_LOSS, G_LOSS)
LEARNING_RATES = (LR_G, LR_D)

# An evaluation record
EVAL = "eval"  # figure name -> value
EVAL_NUM_SAMPLES = "eval_num_samples"
EVAL_EXTRACTOR = "eval_extractor"
EVAL_REFERENCE = "eval_reference"
EVAL_SECONDS = "eval_seconds"

# A rollback record
EVENT = "event"
ROLLBACK = "rollback"  # EVENT's value; also the key of the rollback's count
FROM_STEP = "from_step"
REASON = "reason"
LR_SCALE = "lr_scale"


def regularizer_key(name: str, generator_side: bool = False) -> str:
    """A regularizer's figure: its name; `name_g` for the generator-side term of one that also
    has a discriminator-side term."""
    return f"{name}_g" if generator_side else name


def training_record(step: int, losses: Mapping[str, float], lr_g: float, lr_d: float, img_per_s: float,
                    images_seen: int, skipped_images: int = 0) -> dict[str, Any]:
    """A training record (`losses`: D_LOSS, G_LOSS and the regularizers' figures)."""
    record = {STEP: step, **losses, LR_G: lr_g, LR_D: lr_d, IMG_PER_S: img_per_s, IMAGES_SEEN: images_seen}
    if skipped_images:
        record[SKIPPED_IMAGES] = skipped_images
    return record


def eval_record(step: int, figures: dict[str, float], num_samples: int, extractor: str,
                reference: dict[str, Any], seconds: float) -> dict[str, Any]:
    """An evaluation record: the figures and what they were computed with."""
    return {STEP: step, EVAL: figures, EVAL_NUM_SAMPLES: num_samples, EVAL_EXTRACTOR: extractor,
            EVAL_REFERENCE: reference, EVAL_SECONDS: round(seconds, 2)}


def rollback_record(step: int, from_step: int, reason: str, lr_scale: float, rollback: int) -> dict[str, Any]:
    """A rollback record: back to `step` from `from_step`, the `rollback`-th one."""
    return {STEP: step, EVENT: ROLLBACK, FROM_STEP: from_step, REASON: reason, LR_SCALE: lr_scale,
            ROLLBACK: rollback}


# The keys of a training record that are not a loss or a regularizer's figure, read off the
# builder itself so that the two cannot disagree.
BOOKKEEPING = frozenset(training_record(0, {}, 0.0, 0.0, 0.0, 0, skipped_images=1))


def is_training_record(record: Mapping[str, Any]) -> bool:
    """Whether a record is a training record (it has the losses)."""
    return D_LOSS in record


def is_eval_record(record: Mapping[str, Any]) -> bool:
    """Whether a record holds evaluation figures."""
    return EVAL in record


def loss_keys(records: Iterable[Mapping[str, Any]]) -> list[str]:
    """The loss and regularizer keys of training records, in first-seen order."""
    return [k for k in dict.fromkeys(k for r in records if is_training_record(r) for k in r) if k not in BOOKKEEPING]
