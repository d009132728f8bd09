"""`Conditions`: checks, null rows for guidance, batch concatenation, dropping rows."""

import pytest
import torch

from engine.conditioning import Conditions


def make(batch: int, length: int, frames: int = 4) -> Conditions:
    return Conditions(text=torch.randn(batch, length, 8),
                      text_mask=torch.ones(batch, length, dtype=torch.bool),
                      melody=torch.ones(batch, 12, frames), bpm=torch.full((batch,), 90.0),
                      beat_offset=torch.full((batch,), 0.2))


def test_null_like_drops_everything_and_keeps_shapes():
    c = make(2, 3)
    null = Conditions.null_like(c)
    assert null.text.shape == c.text.shape and not null.text_mask.any()
    assert null.melody.sum() == 0 and (null.bpm == 0).all() and (null.beat_offset == 0).all()


def test_cat_pads_text_with_masked_zeros():
    a, b = make(2, 3), make(1, 5)
    both = Conditions.cat([a, b])
    assert both.text.shape == (3, 5, 8) and both.batch_size == 3
    assert torch.equal(both.text[:2, :3], a.text) and (both.text[:2, 3:] == 0).all()
    assert both.text_mask[:2, 3:].sum() == 0 and both.text_mask[2].all()
    with pytest.raises(ValueError, match="frames"):
        Conditions.cat([a, make(1, 3, frames=5)])


def test_drop_acts_on_the_chosen_rows_only():
    c = make(3, 2)
    rows = torch.tensor([True, False, True])
    dropped = c.drop(text=rows, melody=~rows)
    assert dropped.text_mask.tolist() == [[False, False], [True, True], [False, False]]
    assert (dropped.text[0] == 0).all() and torch.equal(dropped.text[1], c.text[1])
    assert dropped.melody.sum(dim=(1, 2)).tolist() == [48.0, 0.0, 48.0]
    assert torch.equal(dropped.bpm, c.bpm)  # tempo kept


def test_mismatched_shapes_are_refused():
    c = make(2, 3)
    with pytest.raises(ValueError, match="melody"):
        Conditions(c.text, c.text_mask, torch.ones(2, 11, 4), c.bpm, c.beat_offset)
    with pytest.raises(ValueError, match="batch"):
        Conditions(c.text, c.text_mask, c.melody, torch.ones(3), c.beat_offset)
