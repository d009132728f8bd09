"""MIDI in: messages to commands, a MIDI file played in, and no MIDI system at all."""

import logging

import mido
import pytest

from bridge.midi_in import MidiIn, MidiRouter, read_midi_notes
from bridge.osc import commands as c
from bridge.presets import cc_value
from tests.bridge.conftest import ROOT


def test_notes_transport_cc_and_program_change_become_commands():
    router = MidiRouter({1: "temperature", 74: "cfg"}, ["a", "b"], cc_value)
    assert router.route(mido.Message("note_on", note=60, velocity=90)) == [c.MelodyNote(60, 90)]
    assert router.route(mido.Message("note_on", note=60, velocity=0)) == [c.MelodyNote(60, 0)]
    assert router.route(mido.Message("note_off", note=60)) == [c.MelodyNote(60, 0)]
    assert router.route(mido.Message("start")) == [c.Transport(True)]
    assert router.route(mido.Message("stop")) == [c.Transport(False)]
    assert router.route(mido.Message("control_change", control=1, value=127)) == [
        c.Set("temperature", 2.0)]
    assert router.route(mido.Message("control_change", control=74, value=0)) == [c.Set("cfg", 0.0)]
    assert router.route(mido.Message("control_change", control=7, value=5)) == []
    assert router.route(mido.Message("program_change", program=1)) == [c.LoadPreset("b")]
    assert router.route(mido.Message("program_change", program=9)) == []


@pytest.mark.parametrize("bpm", [90.0, 128.0])
def test_midi_clock_gives_the_tempo(bpm):
    router = MidiRouter()
    tick = 60.0 / bpm / 24
    tempos = []
    for index in range(24 * 3):
        tempos += router.route(mido.Message("clock"), when=index * tick)
    assert tempos and tempos[0] == c.Tempo(round(bpm, 2))
    assert len(tempos) == 1  # a steady clock announces its tempo once


def test_a_midi_file_plays_into_the_session(session, folders):
    path = folders.presets / "melodies" / "ode-to-joy.mid"
    midi = MidiIn(MidiRouter(), lambda command: session.handle(command, None))
    midi.play_file(path, realtime=False).join(5)
    notes = session.melody.phrase(60.0)
    assert [n.pitch for n in notes] == [n.pitch for n in read_midi_notes(path)]
    midi.close()


def test_reading_a_midi_file_gives_seconds():
    notes = read_midi_notes(ROOT / "presets" / "melodies" / "ode-to-joy.mid")
    assert len(notes) == 15 and notes[0].pitch == 64
    assert notes[1].onset == pytest.approx(0.6)  # one beat at 100 BPM


def test_no_midi_system_is_said_once_and_the_bridge_runs(caplog):
    midi = MidiIn(MidiRouter(), lambda command: None)
    with caplog.at_level(logging.WARNING):
        opened = midi.open_port("Keystation")
    assert opened is False
    messages = [r.getMessage() for r in caplog.records if "MIDI" in r.getMessage()]
    assert len(messages) == 1 and "running without MIDI" in messages[0]
    midi.close()


def test_midi_drives_the_session_tempo_ccs_and_presets(session, folders, replies, fake_engine):
    names = sorted(p.stem for p in folders.presets.glob("*.yaml"))
    router = MidiRouter({}, names, cc_value)
    session.on_preset.append(lambda preset: setattr(router, "cc_map", dict(preset.cc)))
    midi = MidiIn(router, lambda command: session.handle(command, None))
    midi.receive_bytes(mido.Message("program_change", program=names.index("synth-pad")).bytes())
    assert session.preset.name == "synth-pad" and router.cc_map[71] == "top_p"
    midi.receive_bytes([0xB0, 71, 0])  # CC71 = 0, as rtmidi delivers it
    assert session.settings.top_p == 0.0
    for index in range(60):  # MIDI clock at 100 BPM (a tempo takes two beats of ticks)
        for command in router.route(mido.Message("clock"), when=index * 0.6 / 24):
            session.handle(command, None)
    assert session.host_bpm == 100.0
    send_bars = mido.Message("control_change", control=1, value=127)  # CC1 → temperature
    midi.receive_bytes(send_bars.bytes())
    assert session.settings.temperature == 2.0
    session.settings = session.settings.with_values({"bpm": 0.0, "bars": 1.0})
    from bridge.osc.addresses import parse_message

    session.handle(parse_message("/indie/generate", ["clocked", 0, 1, "m1"]), None)
    replies.wait("/indie/done")
    assert fake_engine.calls[-1]["bpm"] == 100.0 and fake_engine.calls[-1]["bars"] == 1.0
    assert fake_engine.calls[-1]["temperature"] == 2.0
