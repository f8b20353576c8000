"""The notes' codec: what one node tells the others reads back as it was sent,
and a note of a node of the earlier version still reads."""

from __future__ import annotations

import pytest

from presence import notes
from presence.core.model import Pool
from presence.core.seats import Occupancy


def test_a_pool_change_with_its_occupancy_reads_back_as_sent() -> None:
    occupancy = Occupancy(Pool("acme", "desk", "Desk", 3, 600, 60, 80), 2, 1, ("s-1", "s-2"))
    for note in (notes.PoolChanged("acme", "desk", occupancy), notes.PoolChanged("acme", "desk")):
        assert notes.decode(notes.encode(note)) == note


def test_a_pool_change_of_the_earlier_version_asks_for_a_read() -> None:
    earlier = '{"kind":"pool","domain":"acme","pool":"desk"}'
    assert notes.decode(earlier) == notes.PoolChanged("acme", "desk", None)


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        '{"kind":"unknown"}',
        '{"kind":"pool","domain":"acme"}',
        '{"kind":"pool","domain":"acme","pool":"desk","occupancy":{"pool":{}}}',
        '{"kind":"pool","domain":"acme","pool":"desk","occupancy":[1]}',
    ],
)
def test_anything_else_is_a_bad_note(text: str) -> None:
    with pytest.raises(notes.BadNote):
        notes.decode(text)
