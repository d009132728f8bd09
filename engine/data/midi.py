"""Write a performance as a Standard MIDI File (type 1) for FluidSynth."""

from __future__ import annotations

from pathlib import Path

import mido

from engine.atomic import atomic_path
from engine.data.arrange import Performance

TICKS_PER_QUARTER = 480
_DRUM_CHANNEL = 9
_TAIL_QUARTERS = 2.0  # silence after the last note so that releases and reverb ring out


def performance_to_midi(performance: Performance, meter: str = "4/4") -> mido.MidiFile:
    """One track per instrument on its own channel, after a conductor track (tempo, metre)."""
    midi = mido.MidiFile(type=1, ticks_per_beat=TICKS_PER_QUARTER)
    numerator, denominator = (int(x) for x in meter.split("/"))
    end = max(o + d for t in performance.tracks for _, o, d, _ in t.notes) + _TAIL_QUARTERS
    conductor = mido.MidiTrack(
        [
            mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(performance.bpm), time=0),
            mido.MetaMessage("time_signature", numerator=numerator, denominator=denominator),
            mido.MetaMessage("end_of_track", time=_ticks(end)),
        ]
    )
    midi.tracks.append(conductor)
    channels = [c for c in range(16) if c != _DRUM_CHANNEL]
    for index, track in enumerate(performance.tracks):
        channel = channels[index % len(channels)]
        events = [(0, 0, mido.Message("program_change", channel=channel,
                                      program=track.voice.program)),
                  (0, 0, mido.Message("control_change", channel=channel, control=91,
                                      value=performance.reverb))]
        for pitch, onset, duration, velocity in _without_overlaps(track.notes):
            start, stop = _ticks(onset), max(_ticks(onset + duration), _ticks(onset) + 1)
            # At equal times note-offs (order 0) come before note-ons (order 1).
            events.append((start, 1, mido.Message("note_on", channel=channel, note=pitch,
                                                  velocity=velocity)))
            events.append((stop, 0, mido.Message("note_off", channel=channel, note=pitch)))
        events.sort(key=lambda e: (e[0], e[1]))
        midi.tracks.append(_to_delta_track(events))
    return midi


def write_midi(performance: Performance, path: str | Path, meter: str = "4/4") -> Path:
    """Write the performance to `path` atomically."""
    with atomic_path(path) as tmp:
        performance_to_midi(performance, meter).save(tmp)
    return Path(path)


def _ticks(quarters: float) -> int:
    return round(quarters * TICKS_PER_QUARTER)


def _without_overlaps(notes):
    """Cut a note short where the same pitch starts again: MIDI cannot hold one pitch twice."""
    notes = sorted(notes, key=lambda n: (n[0], n[1]))
    result = []
    for i, (pitch, onset, duration, velocity) in enumerate(notes):
        following = notes[i + 1] if i + 1 < len(notes) else None
        if following and following[0] == pitch and following[1] < onset + duration:
            duration = following[1] - onset
        if duration > 0:
            result.append((pitch, onset, duration, velocity))
    return result


def _to_delta_track(events) -> mido.MidiTrack:
    track, now = mido.MidiTrack(), 0
    for tick, _, message in events:
        track.append(message.copy(time=tick - now))
        now = tick
    track.append(mido.MetaMessage("end_of_track", time=0))
    return track
