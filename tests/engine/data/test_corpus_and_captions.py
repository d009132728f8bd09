from collections import Counter

import numpy as np
import pytest

from engine.data.build import split_of
from engine.data.captions import TEMPO_BUCKETS, ClipLabels, make_caption, tempo_bucket
from engine.data.corpus import SOURCES, PieceRef, list_pieces, schedule


@pytest.fixture(scope="module")
def pieces():
    return list_pieces()


def test_the_corpus_gives_thousands_of_pieces_with_unique_slugs(pieces):
    assert len(pieces) > 10_000
    assert Counter(p.source for p in pieces).keys() >= {"bach", "palestrina", "ryansMammoth",
                                                        "essenFolksong", "beethoven"}
    slugs = [p.slug for p in pieces]
    assert len(set(slugs)) == len(slugs)  # one file per piece: a clash would overwrite clips


def test_schedule_is_deterministic_and_interleaves_sources(pieces):
    first = schedule(pieces, seed=5)
    assert [p.piece_id for p in first] == [p.piece_id for p in schedule(pieces[::-1], seed=5)]
    assert [p.piece_id for p in first] != [p.piece_id for p in schedule(pieces, seed=6)]
    assert sorted(p.piece_id for p in first) == sorted(p.piece_id for p in pieces)
    # Any short prefix spans the big sources in proportion to their weights.
    head = Counter(p.source for p in first[:200])
    assert head["bach"] >= 25 and head["palestrina"] >= 15 and head["ryansMammoth"] >= 25
    assert len(head) >= 10


def test_dance_titles_become_the_style():
    reel = PieceRef("ryansMammoth", "ryansMammoth/X.abc", None, "THE MASON'S APRON -- REEL", "")
    plain = PieceRef("ryansMammoth", "ryansMammoth/Y.abc", None, "BONNIE KATE", "")
    chinese = PieceRef("essenFolksong", "essenFolksong/han1.abc", 3, "Song", "")
    assert reel.style == "reel" and plain.style == "fiddle tune"
    assert chinese.style == "Chinese folk song" and chinese.slug == "essenFolksong_han1-3"


def test_splits_are_seeded_and_close_to_their_fractions():
    ids = [f"piece{i}" for i in range(4000)]
    splits = [split_of(i, 0, (0.8, 0.1, 0.1)) for i in ids]
    assert splits == [split_of(i, 0, (0.8, 0.1, 0.1)) for i in ids]
    counts = Counter(splits)
    assert abs(counts["train"] / 4000 - 0.8) < 0.03 and abs(counts["test"] / 4000 - 0.1) < 0.02
    assert splits != [split_of(i, 1, (0.8, 0.1, 0.1)) for i in ids]


def labels(**changes):
    base = dict(family="strings", ensemble="a string quartet (violin, viola and cello)",
                instruments=("violin", "viola", "cello"), bpm=84, tempo="moderate", key="D minor",
                mode="minor", meter="3/4", style="chorale", composer="J.S. Bach", source="bach",
                dynamics="soft", transpose=2)
    base.update(changes)
    return ClipLabels(**base)


@pytest.mark.parametrize("seed", range(40))
def test_captions_state_every_label(seed):
    rng = np.random.default_rng(seed)
    clip = labels(bpm=int(rng.integers(40, 240)), key=str(rng.choice(["F# major", "Bb minor"])),
                  composer=str(rng.choice(["", "Palestrina"])),
                  tempo=str(rng.choice(TEMPO_BUCKETS)))
    caption = make_caption(clip, rng)
    assert str(clip.bpm) in caption
    assert clip.key in caption
    assert clip.meter in caption
    assert clip.ensemble in caption.lower() or clip.ensemble.capitalize() in caption
    assert "chorale" in caption.lower()
    assert clip.composer in caption  # "" is in any caption: traditional tunes name none
    assert caption.endswith(".") and not caption[0].islower()


def test_captions_vary_in_wording_but_not_in_facts():
    captions = {make_caption(labels(), np.random.default_rng(s)) for s in range(60)}
    assert len(captions) > 30
    assert make_caption(labels(), np.random.default_rng(1)) == make_caption(
        labels(), np.random.default_rng(1))


def test_tempo_buckets_follow_the_felt_beat():
    assert tempo_bucket(60) == "slow" and tempo_bucket(90) == "moderate"
    assert tempo_bucket(120) == "fast"


def test_every_source_has_a_sane_tempo_range():
    for name, source in SOURCES.items():
        low, high = source.beat_bpm
        assert 40 <= low < high <= 160, name
