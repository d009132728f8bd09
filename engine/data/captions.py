"""Captions: varied natural sentences built from what we know of each clip.

Every caption states the ensemble (with its instruments), the style, the tempo as a word and in
BPM, the key and mode, and the metre; the composer when one is known, the dynamics sometimes.
The wording varies (templates and synonyms drawn by seed) so that the text encoder sees language
rather than a fixed form, while the facts stay checkable against the labels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TEMPO_BUCKETS = ("slow", "moderate", "fast")
_TEMPO_WORDS = {
    "slow": ("slow", "unhurried", "gentle, slow", "stately", "slow and calm"),
    "moderate": ("moderate", "steady", "flowing", "mid-tempo", "easy-going"),
    "fast": ("fast", "lively", "brisk", "spirited", "up-tempo"),
}
_DYNAMICS_PHRASES = {
    "soft": ("played softly", "quiet and intimate", "at a gentle volume"),
    "moderate": ("at a moderate volume", "evenly played", "with a balanced sound"),
    "loud": ("played loud", "bold and full", "with a strong, loud sound"),
}
_TEMPLATES = (
    "{Ensemble} playing {a_tempo} {style}{by} in {key}, {bpm} BPM, {meter} time.",
    "{A_tempo} {style}{by} for {ensemble}, in {key} and {meter} time, at {bpm} bpm.",
    "{Style}{by}, arranged for {ensemble}: {tempo}, {bpm} BPM, {key}, {meter}.",
    "{Key} {style}{by} in {meter}, performed by {ensemble} at {bpm} BPM ({tempo}).",
    "{bpm} BPM, {key}, {meter} time: {a_tempo} {style}{by} on {ensemble}.",
    "{Ensemble} in {key}: {a_tempo} {style}{by}, {meter} metre, tempo {bpm} BPM.",
)


@dataclass(frozen=True)
class ClipLabels:
    """What we know of a clip; the source of its caption and of the tagger's targets."""

    family: str  # ensemble family ("strings")
    ensemble: str  # how the caption names the players ("a string quartet (violin and cello)")
    instruments: tuple[str, ...]
    bpm: int  # quarter notes per minute, exact
    tempo: str  # one of TEMPO_BUCKETS, judged on the felt beat
    key: str  # "D minor"
    mode: str  # "major" | "minor"
    meter: str  # "3/4"
    style: str  # "chorale", "reel", ...
    composer: str  # "" for traditional music
    source: str  # corpus folder
    dynamics: str  # "soft" | "moderate" | "loud"
    transpose: int  # semitones from the score


def tempo_bucket(beat_bpm: float) -> str:
    """Slow / moderate / fast, judged on the felt beat (a jig's dotted quarter, not its 8ths)."""
    if beat_bpm < 70:
        return "slow"
    return "moderate" if beat_bpm < 105 else "fast"


def make_caption(labels: ClipLabels, rng: np.random.Generator) -> str:
    """One natural sentence stating the clip's labels, worded by `rng`."""
    tempo = _pick(rng, _TEMPO_WORDS[labels.tempo])
    if labels.composer:
        by = f" by {labels.composer}"
    else:
        by = _pick(rng, ("", " (traditional)", ", a traditional tune"))
    fields = {
        "ensemble": labels.ensemble,
        "tempo": tempo,
        "a_tempo": f"{_article(tempo)} {tempo}",
        "style": labels.style,
        "by": by,
        "key": labels.key,
        "bpm": labels.bpm,
        "meter": labels.meter,
    }
    fields.update({name[0].upper() + name[1:]: _capitalise(str(value))
                   for name, value in list(fields.items())})
    caption = _pick(rng, _TEMPLATES).format(**fields)
    if rng.random() < 0.4:
        caption = caption[:-1] + f", {_pick(rng, _DYNAMICS_PHRASES[labels.dynamics])}."
    return caption


def _pick(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    return options[int(rng.integers(len(options)))]


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _capitalise(text: str) -> str:
    return text[:1].upper() + text[1:]
