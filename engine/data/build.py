"""The training-data builder: corpus scores → arranged MIDI → FluidSynth audio → captioned clips.

Layout of a dataset folder:

    build.json            the config and seed it was built with (a resume must match them)
    pieces/<slug>.json    one record per processed piece: its split, status and clip rows
    midi/<slug>.mid       what was rendered
    audio/<slug>-NNN.flac 32 kHz mono clips
    train.jsonl, valid.jsonl, test.jsonl, summary.json

A piece's record is written last and atomically, so an interrupted build resumes by skipping the
pieces that have one. The pieces are processed in a seeded order (`corpus.schedule`), and the
dataset is the shortest prefix of that order that reaches the requested hours or piece count:
the same seed gives the same dataset however many workers ran and however often it resumed.
(Parallel workers render a few pieces ahead; those stay on disk for a later, larger build.)
"""

from __future__ import annotations

import functools
import json
import logging
import multiprocessing
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engine.atomic import write_json_atomic
from engine.audio import write_audio
from engine.config import from_dict, to_dict
from engine.data.arrange import choose_arrangement, perform
from engine.data.captions import ClipLabels, make_caption, tempo_bucket
from engine.data.clips import cut_clips, normalise
from engine.data.corpus import (
    SOURCES,
    PieceRef,
    list_pieces,
    parse_piece,
    schedule,
    stable_fraction,
)
from engine.data.ensembles import FAMILIES, describe
from engine.data.manifest import SPLITS, ClipRow, write_manifest
from engine.data.midi import write_midi
from engine.data.score import extract
from engine.data.synth import DEFAULT_SOUNDFONT, check_synth, render_midi
from engine.melody import crop_notes

log = logging.getLogger(__name__)

_TAIL_SECONDS = 2.0


@dataclass(frozen=True)
class DatasetConfig:
    """How clips are made. Part of a dataset's identity: a resume must use the same one."""

    sample_rate: int = 32000
    clip_seconds: float = 10.0
    min_clip_seconds: float = 5.0  # a piece's last, shorter clip is kept from this length
    max_piece_seconds: float = 180.0  # long movements are cut: variety over length
    silence_db: float = -45.0  # clips quieter than this (RMS, dBFS) are dropped
    splits: tuple[float, float, float] = (0.9, 0.05, 0.05)  # train, valid, test, by piece
    sources: tuple[str, ...] = ()  # corpus folders (empty: all of `corpus.SOURCES`)
    accompany: float = 0.7  # probability that a single-line tune gets chords and bass
    soundfont: str = DEFAULT_SOUNDFONT

    def __post_init__(self) -> None:
        unknown = sorted(set(self.sources) - set(SOURCES))
        if unknown:
            raise ValueError(f"unknown sources {unknown}; known: {', '.join(SOURCES)}")
        if not 0 < self.min_clip_seconds <= self.clip_seconds:
            raise ValueError("need 0 < min_clip_seconds <= clip_seconds")
        if min(self.splits) < 0 or sum(self.splits) <= 0:
            raise ValueError("splits must be non-negative fractions with a positive sum")


@dataclass(frozen=True)
class PieceResult:
    """What became of one piece."""

    piece: str
    slug: str
    split: str
    rows: tuple[ClipRow, ...]
    skipped: str = ""  # why no clips came out of it ("" when it has clips)

    @property
    def seconds(self) -> float:
        return sum(row.seconds for row in self.rows)


@dataclass
class BuildReport:
    """The outcome of a build: the summary written to summary.json, and the split manifests."""

    summary: dict
    manifests: dict[str, Path] = field(default_factory=dict)


class DatasetError(RuntimeError):
    """The build cannot go on (a resume with other settings, a missing synthesizer)."""


def split_of(piece_id: str, seed: int, fractions: Sequence[float]) -> str:
    """The split of a piece: a seeded draw, so all its clips land in the same one."""
    draw = stable_fraction(seed, "split", piece_id) * sum(fractions)
    for name, edge in zip(SPLITS, np.cumsum(fractions), strict=False):
        if draw < edge:
            return name
    return SPLITS[-1]


def build_piece(ref: PieceRef, out_dir: Path, config: DatasetConfig, seed: int) -> PieceResult:
    """Arrange, render and cut one piece; write its clips and its record. Never raises for a
    piece that cannot be used (it is recorded as skipped with the reason)."""
    split = split_of(ref.piece_id, seed, config.splits)
    try:
        rows = _render_piece(ref, out_dir, config, seed, split)
        result = PieceResult(ref.piece_id, ref.slug, split, tuple(rows),
                             "" if rows else "no clip above the silence threshold")
    except Exception as error:  # noqa: BLE001 - one bad score must not stop a 10-hour build
        log.warning("skipping %s: %s: %s", ref.piece_id, type(error).__name__, error)
        result = PieceResult(ref.piece_id, ref.slug, split, (), f"{type(error).__name__}: {error}")
    write_json_atomic(out_dir / "pieces" / f"{ref.slug}.json", _result_record(result))
    return result


def _render_piece(ref: PieceRef, out_dir: Path, config: DatasetConfig, seed: int,
                  split: str) -> list[ClipRow]:
    rng = np.random.default_rng(int(stable_fraction(seed, "piece", ref.piece_id) * 2**63))
    piece = extract(parse_piece(ref))
    arrangement = choose_arrangement(piece, SOURCES[ref.source], rng, config.accompany)
    performance = perform(piece, arrangement, rng, config.max_piece_seconds)
    midi_path = write_midi(performance, out_dir / "midi" / f"{ref.slug}.mid", piece.meter)
    samples = render_midi(midi_path, config.soundfont, config.sample_rate)
    # Keep the ring-out of the last notes, not seconds of a pad's release after them.
    samples = normalise(samples[: int((performance.seconds + _TAIL_SECONDS) * config.sample_rate)],
                        arrangement.dynamics)
    voices = list(arrangement.voices)
    labels = ClipLabels(
        family=arrangement.family,
        ensemble=describe(FAMILIES[arrangement.family], voices),
        instruments=tuple(dict.fromkeys(v.name for v in voices)),
        bpm=arrangement.bpm,
        tempo=tempo_bucket(arrangement.bpm / piece.beat_quarters),
        key=arrangement.key_name(piece),
        mode=piece.mode,
        meter=piece.meter,
        style=ref.style,
        composer=ref.composer,
        source=ref.source,
        dynamics=arrangement.dynamics,
        transpose=arrangement.transpose,
    )
    rate = config.sample_rate
    rows = []
    spans = cut_clips(samples, rate, config.clip_seconds, config.min_clip_seconds,
                      config.silence_db)
    for index, (begin, end) in enumerate(spans):
        start, stop = begin / rate, end / rate
        clip_id = f"{ref.slug}-{index:03d}"
        write_audio(out_dir / "audio" / f"{clip_id}.flac", samples[begin:end], rate)
        downbeat = next((b - start for b in performance.bar_lines if start <= b < stop), None)
        rows.append(ClipRow(
            id=clip_id,
            audio=f"audio/{clip_id}.flac",
            seconds=round(stop - start, 6),
            split=split,
            piece=ref.piece_id,
            start=round(start, 6),
            caption=make_caption(labels, rng),
            labels=labels,
            melody=tuple(crop_notes(performance.melody, start, stop)),
            downbeat=None if downbeat is None else round(downbeat, 6),
        ))
    return rows


def _result_record(result: PieceResult) -> dict:
    return {"piece": result.piece, "slug": result.slug, "split": result.split,
            "skipped": result.skipped, "rows": [row.to_record() for row in result.rows]}


def _load_result(path: Path) -> PieceResult | None:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        rows = tuple(ClipRow.from_record(r) for r in record["rows"])
        return PieceResult(record["piece"], record["slug"], record["split"], rows,
                           record["skipped"])
    except (OSError, ValueError, KeyError, TypeError):
        log.warning("ignoring unreadable piece record %s; the piece is rebuilt", path)
        return None


def build_dataset(
    out_dir: str | Path,
    config: DatasetConfig = DatasetConfig(),
    seed: int = 0,
    *,
    hours: float | None = None,
    limit: int | None = None,
    workers: int = 1,
    on_piece: Callable[[PieceResult], None] | None = None,
) -> BuildReport:
    """Build (or resume) a dataset in `out_dir`.

    Args:
        config: how clips are made; must match the one a resumed folder was built with.
        seed: decides the piece order, the splits and every arrangement.
        hours: stop once the dataset holds this much audio.
        limit: stop once this many pieces gave clips (with neither: the whole corpus).
        workers: processes rendering in parallel.
        on_piece: called with each piece's result, in order (for progress bars).
    """
    out = Path(out_dir)
    _claim_folder(out, config, seed)
    check_synth(config.soundfont)
    order = schedule(list_pieces(config.sources), seed)
    done = {p.stem: r for p in sorted((out / "pieces").glob("*.json"))
            if (r := _load_result(p)) is not None}
    work = functools.partial(build_piece, out_dir=out, config=config, seed=seed)
    started, rendered, rendered_seconds = time.monotonic(), 0, 0.0
    selected: list[PieceResult] = []
    seconds, used = 0.0, 0
    results = _in_order(order, done, work, workers)
    try:
        for result in results:
            if result.slug not in done:
                rendered += 1
                rendered_seconds += result.seconds
            selected.append(result)
            seconds += result.seconds
            used += bool(result.rows)
            if on_piece:
                on_piece(result)
            if (hours is not None and seconds >= hours * 3600) or (
                    limit is not None and used >= limit):
                break
    finally:
        results.close()
    wall = time.monotonic() - started
    summary = summarize(selected)
    summary["seed"] = seed
    summary["build"] = {"wall_seconds": round(wall, 1), "workers": workers,
                        "pieces_rendered": rendered,
                        "pieces_resumed": len(selected) - rendered,
                        "hours_rendered": round(rendered_seconds / 3600, 3),
                        "x_realtime": round(rendered_seconds / max(wall, 1e-9), 1)}
    manifests = {}
    for split in SPLITS:
        rows = [row for r in selected if r.split == split for row in r.rows]
        manifests[split] = write_manifest(out / f"{split}.jsonl", rows)
    write_json_atomic(out / "summary.json", summary)
    return BuildReport(summary, manifests)


def _claim_folder(out: Path, config: DatasetConfig, seed: int) -> None:
    """Record the settings in build.json, or check that a resumed folder used the same ones."""
    settings = {"seed": seed, "config": to_dict(config)}
    marker = out / "build.json"
    if marker.exists():
        previous = json.loads(marker.read_text(encoding="utf-8"))
        if previous != settings:
            old = from_dict(DatasetConfig, previous.get("config", {}), source=str(marker))
            changed = [k for k, v in to_dict(config).items() if to_dict(old).get(k) != v]
            if previous.get("seed") != seed:
                changed.append("seed")
            raise DatasetError(f"{out} was built with other settings ({', '.join(changed)}); "
                               "resume with the same ones or build into a new folder")
        return
    if out.exists() and any(out.iterdir()):
        raise DatasetError(f"{out} is not empty and holds no build.json; choose an empty folder")
    write_json_atomic(marker, settings)


def _in_order(order: Sequence[PieceRef], done: dict[str, PieceResult],
              work: Callable[[PieceRef], PieceResult], workers: int) -> Iterator[PieceResult]:
    """Results in `order`, computed with a few pieces of look-ahead on `workers` processes."""
    if workers <= 1:
        for ref in order:
            yield done.get(ref.slug) or work(ref)
        return
    context = multiprocessing.get_context("spawn")  # no fork of a process holding torch threads
    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        pending: deque[Future | PieceResult] = deque()
        refs = iter(order)
        try:
            while True:
                while len(pending) < 2 * workers and (ref := next(refs, None)) is not None:
                    pending.append(done.get(ref.slug) or pool.submit(work, ref))
                if not pending:
                    return
                head = pending.popleft()
                yield head.result() if isinstance(head, Future) else head
        finally:
            for item in pending:
                if isinstance(item, Future):
                    item.cancel()


def summarize(results: Sequence[PieceResult]) -> dict:
    """Hours, clips and pieces per split, and histograms of the labels."""
    rows = [row for r in results for row in r.rows]
    splits = {}
    for split in SPLITS:
        in_split = [r for r in results if r.split == split and r.rows]
        splits[split] = {
            "pieces": len(in_split),
            "clips": sum(len(r.rows) for r in in_split),
            "hours": round(sum(r.seconds for r in in_split) / 3600, 3),
        }
    labels = {}
    for name in ("family", "source", "style", "tempo", "mode", "key", "meter", "dynamics"):
        counts = Counter(getattr(row.labels, name) for row in rows)
        labels[name] = dict(counts.most_common())
    labels["composer"] = dict(Counter(row.labels.composer or "traditional"
                                      for row in rows).most_common(15))
    bpms = [row.labels.bpm for row in rows]
    skipped = Counter(r.skipped.split(":")[0] for r in results if r.skipped)
    return {
        "hours": round(sum(row.seconds for row in rows) / 3600, 3),
        "clips": len(rows),
        "pieces": {"used": sum(bool(r.rows) for r in results), "skipped": sum(skipped.values()),
                   "skipped_reasons": dict(skipped)},
        "splits": splits,
        "labels": labels,
        "bpm": {"min": min(bpms), "max": max(bpms), "mean": round(float(np.mean(bpms)), 1)}
        if bpms else {},
    }
