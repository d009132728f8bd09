"""Ensembles of General-MIDI instruments, grouped into named families.

A family lists its voices from the highest to the lowest; a score's parts, sorted by register,
take voices spread across that list, so a four-part chorale on "brass" becomes trumpet, trumpet,
horn, trombone, and a single tune becomes a solo for the family's lead voice. The family name is
the label a tagger learns; the instrument names go into the captions.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Voice:
    """One instrument: its name in captions and its General-MIDI program (0-based)."""

    name: str
    program: int


@dataclass(frozen=True)
class Family:
    """A named ensemble family.

    Attributes:
        name: the label ("strings").
        ensemble: how captions name the full group ("a string quartet").
        voices: highest to lowest; the first is the lead for solos and melodies.
        accompaniment: voices (chord, bass) that accompany a single-line tune.
    """

    name: str
    ensemble: str
    voices: tuple[Voice, ...]
    accompaniment: tuple[Voice, Voice]


def _v(name: str, program: int) -> Voice:
    return Voice(name, program)


VIOLIN, VIOLA, CELLO = _v("violin", 40), _v("viola", 41), _v("cello", 42)
PIANO, ACOUSTIC_BASS = _v("piano", 0), _v("acoustic bass", 32)

FAMILIES: dict[str, Family] = {
    family.name: family
    for family in (
        Family("strings", "a string quartet", (VIOLIN, VIOLIN, VIOLA, CELLO),
               (_v("string ensemble", 48), CELLO)),
        Family("piano", "solo piano", (PIANO,), (PIANO, PIANO)),
        Family("organ", "a church organ", (_v("church organ", 19),),
               (_v("church organ", 19), _v("church organ", 19))),
        Family("harpsichord", "a harpsichord", (_v("harpsichord", 6),),
               (_v("harpsichord", 6), _v("harpsichord", 6))),
        Family("woodwinds", "a woodwind ensemble",
               (_v("flute", 73), _v("oboe", 68), _v("clarinet", 71), _v("bassoon", 70)),
               (_v("clarinet", 71), _v("bassoon", 70))),
        Family("brass", "a brass ensemble",
               (_v("trumpet", 56), _v("trumpet", 56), _v("french horn", 60), _v("trombone", 57),
                _v("tuba", 58)),
               (_v("french horn", 60), _v("tuba", 58))),
        Family("choir", "a choir", (_v("choir", 52),), (_v("choir", 53), _v("choir", 52))),
        Family("guitar", "acoustic guitars",
               (_v("nylon guitar", 24), _v("steel guitar", 25), _v("nylon guitar", 24)),
               (_v("nylon guitar", 24), ACOUSTIC_BASS)),
        Family("synth", "synthesizers",
               (_v("saw lead", 81), _v("warm pad", 89), _v("polysynth pad", 90),
                _v("synth bass", 38)),
               (_v("warm pad", 89), _v("synth bass", 38))),
        Family("mallets", "mallet percussion",
               (_v("vibraphone", 11), _v("marimba", 12), _v("marimba", 12)),
               (_v("marimba", 12), _v("marimba", 12))),
        Family("harp", "a harp", (_v("harp", 46),), (_v("harp", 46), _v("harp", 46))),
        Family("folk", "a folk band",
               (_v("fiddle", 110), _v("accordion", 21), _v("steel guitar", 25), ACOUSTIC_BASS),
               (_v("steel guitar", 25), ACOUSTIC_BASS)),
    )
}


def assign_voices(family: Family, num_parts: int) -> list[Voice]:
    """Voices for `num_parts` parts sorted high to low, spread across the family's range."""
    voices = family.voices
    if num_parts == 1:
        return [voices[0]]
    if num_parts <= len(voices):
        # Keep the top and the bottom voices and spread the rest evenly between them.
        return [voices[round(i * (len(voices) - 1) / (num_parts - 1))] for i in range(num_parts)]
    return [voices[i * len(voices) // num_parts] for i in range(num_parts)]


def describe(family: Family, voices: list[Voice]) -> str:
    """How a caption names the players: "a string quartet (violin, viola and cello)"."""
    names = list(dict.fromkeys(v.name for v in voices))  # unique, in order
    if len(voices) == 1:
        return f"solo {names[0]}"
    if len(names) == 1:
        return f"{family.ensemble} ({names[0]})" if names[0] not in family.ensemble else (
            family.ensemble)
    listed = ", ".join(names[:-1]) + f" and {names[-1]}"
    if family.name == "strings" and len(voices) != 4:
        return f"strings ({listed})"
    return f"{family.ensemble} ({listed})"
