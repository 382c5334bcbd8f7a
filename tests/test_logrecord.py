"""log.jsonl's records are built in one place (ganforge.logrecord), byte for byte as runs have
always written them, so the logs of old runs read the same."""

from __future__ import annotations

import json
from pathlib import Path

from ganforge.logrecord import (
    BOOKKEEPING,
    LOSSES,
    eval_record,
    is_eval_record,
    is_training_record,
    loss_keys,
    regularizer_key,
    rollback_record,
    training_record,
)

FIXTURE_LOG = Path(__file__).resolve().parent / "fixtures" / "tiny_run_v1" / "log.jsonl"


def test_training_records_are_written_as_the_old_runs_wrote_them():
    lines = FIXTURE_LOG.read_text().splitlines()
    assert lines
    for line in lines:
        old = json.loads(line)
        losses = {k: old[k] for k in old if k not in BOOKKEEPING}
        new = training_record(old["step"], losses, old["lr_g"], old["lr_d"], old["img_per_s"], old["images_seen"])
        assert json.dumps(new) == line
        assert is_training_record(new) and not is_eval_record(new)


def test_the_three_kinds_keep_their_keys_in_order():
    record = training_record(7, {"d_loss": 1.0, "g_loss": 2.0, "r1": 0.1, "pl_g": 0.2}, 1e-4, 2e-4, 50.0, 56,
                             skipped_images=3)
    assert list(record) == ["step", "d_loss", "g_loss", "r1", "pl_g", "lr_g", "lr_d", "img_per_s", "images_seen",
                            "skipped_images"]
    assert "skipped_images" not in training_record(7, {}, 1e-4, 2e-4, 50.0, 56)
    record = eval_record(8, {"fid": 12.5}, 500, "inception", {"num_samples": 500}, 3.14159)
    assert json.dumps(record) == ('{"step": 8, "eval": {"fid": 12.5}, "eval_num_samples": 500, "eval_extractor": '
                                  '"inception", "eval_reference": {"num_samples": 500}, "eval_seconds": 3.14}')
    assert is_eval_record(record) and not is_training_record(record)
    record = rollback_record(4, from_step=6, reason="step 6: d_loss became non-finite", lr_scale=0.5, rollback=1)
    assert json.dumps(record) == ('{"step": 4, "event": "rollback", "from_step": 6, "reason": "step 6: d_loss '
                                  'became non-finite", "lr_scale": 0.5, "rollback": 1}')


def test_losses_are_every_key_but_the_bookkeeping():
    assert BOOKKEEPING == {"step", "lr_g", "lr_d", "img_per_s", "images_seen", "skipped_images"}
    assert not BOOKKEEPING & set(LOSSES)
    records = [training_record(1, {"d_loss": 1.0, "g_loss": 1.0}, 1e-4, 1e-4, 1.0, 8),
               eval_record(1, {"fid": 1.0}, 10, "x", {}, 1.0),
               training_record(2, {"d_loss": 1.0, "g_loss": 1.0, regularizer_key("r1"): 0.1,
                                   regularizer_key("pl", generator_side=True): 0.2}, 1e-4, 1e-4, 1.0, 16, 1)]
    assert loss_keys(records) == ["d_loss", "g_loss", "r1", "pl_g"]
