"""The scores we learn from: the corpus that ships inside music21, grouped into sources.

A source is a folder of the corpus with what we know of it (style, composer, plausible tempi and
ensembles). Pieces are listed from music21's metadata bundle, so files that hold many tunes (ABC
collections) give one piece per tune.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from music21.stream import Score

log = logging.getLogger(__name__)

SCORE_SUFFIXES = (".mxl", ".xml", ".musicxml", ".krn", ".abc")


@dataclass(frozen=True)
class Source:
    """What we know of one corpus folder.

    Attributes:
        style: noun phrase for captions ("chorale").
        composer: default composer ("" for traditional music; metadata may refine it).
        beat_bpm: range of the *felt* beat tempo; the quarter-note BPM follows from the metre.
        families: ensemble families that suit the music (names from `ensembles.FAMILIES`).
        weight: relative share of pieces in a build.
        dance_titles: titles name the dance ("... -- REEL"), which then becomes the style.
    """

    style: str
    composer: str
    beat_bpm: tuple[int, int]
    families: tuple[str, ...]
    weight: float
    dance_titles: bool = False


_SACRED = ("choir", "organ", "strings", "brass", "woodwinds", "synth")
_CHORALE = ("choir", "organ", "strings", "brass", "woodwinds", "piano", "synth", "guitar",
            "harpsichord", "mallets")
_CHAMBER = ("strings", "strings", "strings", "piano", "woodwinds", "brass", "synth", "organ")
_FOLK = ("folk", "folk", "woodwinds", "piano", "guitar", "strings", "harp", "mallets", "synth",
         "organ", "brass")
_EARLY = ("woodwinds", "strings", "guitar", "harp", "organ", "choir", "mallets")

SOURCES: dict[str, Source] = {
    "bach": Source("chorale", "J.S. Bach", (56, 92), _CHORALE, 0.16),
    "palestrina": Source("Renaissance motet", "Palestrina", (48, 80), _SACRED, 0.10),
    "josquin": Source("Renaissance chanson", "Josquin des Prez", (50, 80), _SACRED, 0.01),
    "monteverdi": Source("madrigal", "Monteverdi", (60, 100), _SACRED + ("guitar",), 0.06),
    "trecento": Source("Trecento song", "", (50, 90), _EARLY, 0.05),
    "beethoven": Source("string quartet movement", "Beethoven", (60, 140), _CHAMBER, 0.02),
    "mozart": Source("string quartet movement", "Mozart", (60, 140), _CHAMBER, 0.015),
    "haydn": Source("string quartet movement", "Haydn", (60, 140), _CHAMBER, 0.01),
    "schumann_robert": Source("romantic chamber piece", "Robert Schumann", (60, 130), _CHAMBER,
                              0.006),
    "schumann_clara": Source("romantic chamber piece", "Clara Schumann", (60, 130), _CHAMBER,
                             0.005),
    "ryansMammoth": Source("fiddle tune", "", (70, 120), _FOLK, 0.16, True),
    "oneills1850": Source("Irish tune", "", (70, 120), _FOLK, 0.12, True),
    "airdsAirs": Source("Scottish tune", "", (70, 120), _FOLK, 0.08, True),
    "essenFolksong": Source("German folk song", "", (60, 110), _FOLK, 0.12),
    "miscFolk": Source("folk tune", "", (70, 120), _FOLK, 0.03, True),
    "nottingham-dataset": Source("English dance tune", "", (80, 120), _FOLK, 0.01, True),
    "corelli": Source("Baroque sonata", "Corelli", (60, 110), _CHAMBER, 0.001),
    "handel": Source("Baroque aria", "Handel", (50, 80), _CHAMBER, 0.001),
    "schubert": Source("Lied", "Schubert", (60, 90), _CHAMBER, 0.001),
    "weber": Source("romantic concertino", "Weber", (60, 120), _CHAMBER, 0.001),
    "joplin": Source("ragtime", "Scott Joplin", (70, 100), ("piano", "piano", "guitar", "brass"),
                     0.001),
    "chopin": Source("mazurka", "Chopin", (100, 150), ("piano",), 0.001),
}

# Dance types named in fiddle-tune titles ("THE MASON'S APRON -- REEL").
_DANCES = ("reel", "jig", "hornpipe", "strathspey", "polka", "waltz", "march", "schottische",
           "quadrille", "air", "lament", "slide", "fling", "set dance", "quickstep")
# Essen collections that are not German.
_ESSEN_REGIONS = {"han": "Chinese folk song", "irl": "Irish folk song",
                  "lux": "Luxembourg folk song", "lot": "folk song from Lorraine"}


@dataclass(frozen=True)
class PieceRef:
    """One piece of the corpus: a file, and the tune number for files that hold many."""

    source: str
    path: str  # relative to the music21 corpus root, e.g. "bach/bwv101.7.mxl"
    number: int | None
    title: str
    composer: str

    @property
    def piece_id(self) -> str:
        return self.path if self.number is None else f"{self.path}#{self.number}"

    @property
    def slug(self) -> str:
        """A file-name-safe, unique name for this piece."""
        stem = re.sub(r"\.(mxl|xml|musicxml|krn|abc)$", "", self.path)
        name = re.sub(r"[^A-Za-z0-9.-]+", "_", stem).strip("_")
        return name if self.number is None else f"{name}-{self.number}"

    @property
    def style(self) -> str:
        """The style noun for captions, refined from the title or file where we can."""
        source = SOURCES[self.source]
        if self.source == "essenFolksong":
            file = self.path.split("/")[-1]
            return next((s for p, s in _ESSEN_REGIONS.items() if file.startswith(p)), source.style)
        lowered = self.title.lower()
        dance = next((d for d in _DANCES if re.search(rf"\b{d}s?\b", lowered)), None)
        if dance and source.dance_titles:
            return dance
        return source.style


def list_pieces(sources: Iterable[str] = ()) -> list[PieceRef]:
    """All pieces of the given sources (all known sources when empty), sorted by id."""
    from music21 import corpus

    wanted = set(sources) or set(SOURCES)
    unknown = wanted - set(SOURCES)
    if unknown:
        raise ValueError(f"unknown sources {sorted(unknown)}; known: {', '.join(SOURCES)}")
    bundle = corpus.corpora.CoreCorpus().metadataBundle
    # Iterating the bundle itself is quadratic (20 s); its entry dict is linear (0.1 s).
    entries = getattr(bundle, "_metadataEntries", None)
    pieces = {}
    for entry in entries.values() if isinstance(entries, dict) else bundle:
        path = str(entry.sourcePath)
        source = path.split("/")[0]
        if source not in wanted or not path.endswith(SCORE_SUFFIXES):
            continue
        meta = entry.metadata
        number = int(entry.number) if entry.number else None
        title = (meta.title or meta.movementName or "") if meta else ""
        composer = SOURCES[source].composer or _clean_composer(meta.composer if meta else None)
        ref = PieceRef(source, path, number, str(title).strip(), composer)
        # A few works ship in two formats (bwv277.krn and .mxl): one piece, one slug, one split.
        kept = pieces.get(ref.slug)
        if kept is None or _format_rank(ref.path) < _format_rank(kept.path):
            pieces[ref.slug] = ref
    return sorted(pieces.values(), key=lambda p: p.piece_id)


def _format_rank(path: str) -> int:
    """Prefer MusicXML (richer: parts, names, ties) over Humdrum and ABC."""
    return next(i for i, suffix in enumerate(SCORE_SUFFIXES) if path.endswith(suffix))


def _clean_composer(name: str | None) -> str:
    if not name or name.lower().startswith(("anonymous", "music21")):
        return ""
    return name.split("\n")[0].strip()


def schedule(pieces: Sequence[PieceRef], seed: int) -> list[PieceRef]:
    """Deterministic build order: shuffled within sources, interleaved by source weight.

    Stride scheduling: the next piece comes from the source that is furthest behind its share,
    so any prefix of the order (a small build) spans the sources in proportion to their weights.
    """
    by_source: dict[str, list[PieceRef]] = {}
    for piece in sorted(pieces, key=lambda p: stable_fraction(seed, "order", p.piece_id)):
        by_source.setdefault(piece.source, []).append(piece)
    taken = dict.fromkeys(by_source, 0)
    order = []
    while by_source:
        name = min(by_source, key=lambda s: ((taken[s] + 1) / SOURCES[s].weight, s))
        order.append(by_source[name][taken[name]])
        taken[name] += 1
        if taken[name] == len(by_source[name]):
            del by_source[name]
    return order


def stable_fraction(seed: int, *keys: str) -> float:
    """A number in [0, 1) that depends only on the seed and the keys (not on Python's hash)."""
    digest = hashlib.sha256("\x1f".join([str(seed), *keys]).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def parse_piece(ref: PieceRef) -> Score:
    """Parse one piece with music21 (a single tune out of a collection when numbered)."""
    from music21 import corpus

    score = corpus.parse(ref.path, number=ref.number)
    if not hasattr(score, "parts"):  # an Opus: take the numbered score from it
        score = score.getScoreByNumber(ref.number) if ref.number else score.scores[0]
    return score
