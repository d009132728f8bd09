"""MIDI garbage through the real byte path (MidiIn.receive_bytes, what rtmidi's callback feeds):
running status, sysex floods, stray bytes, stuck and orphan notes, channel chaos, clock jitter,
bursts and stops, start/stop floods. The melody and tempo stay sane.

Run with -s to see the measured figures (time per sysex message, tempo error under jitter).
"""

import random
import time
import tracemalloc

import mido
import numpy as np
import pytest

from bridge import melody_recorder as mr
from bridge.midi_bytes import MidiDecoder
from bridge.midi_clock import MAX_BPM, MIN_BPM
from bridge.midi_in import MidiIn, MidiRouter
from bridge.osc import commands as c
from bridge.osc.addresses import parse_message

CLOCK, START, STOP = 0xF8, 0xFA, 0xFC


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def collecting_midi(router=None):
    commands: list[c.Command] = []
    return MidiIn(router or MidiRouter(), commands.append), commands


def notes_of(commands):
    return [(x.pitch, x.velocity) for x in commands if isinstance(x, c.MelodyNote)]


def recording_midi(clock: FakeClock):
    """MidiIn → MelodyRecorder on a fake clock, as the session wires /indie/melody/note."""
    recorder = mr.MelodyRecorder(clock)
    midi = MidiIn(MidiRouter(), lambda command: isinstance(command, c.MelodyNote)
                  and recorder.note(command.pitch, command.velocity))
    return midi, recorder


def assert_sane_line(notes, max_seconds):
    for note, following in zip(notes, notes[1:], strict=False):
        assert note.offset <= following.onset  # monophonic, in order
    for note in notes:
        assert 0 <= note.pitch <= 127 and 0 <= note.onset < note.offset <= max_seconds


# -- bytes ----------------------------------------------------------------------------------

def test_running_status_notes_all_arrive_in_any_chunks():
    stream = bytes([0x90, 60, 100, 62, 101, 64, 102,  # three note-ons, one status byte
                    60, 0, 62, 0, 64, 0,  # their note-offs (velocity 0), still running
                    0xB0, 1, 64, 1, 65])  # two CCs, running status too
    expected = [(60, 100), (62, 101), (64, 102), (60, 0), (62, 0), (64, 0)]
    whole, commands = collecting_midi(MidiRouter({1: "temperature"}))
    whole.receive_bytes(stream)
    assert notes_of(commands) == expected
    assert [x.value for x in commands if isinstance(x, c.Set)] == [64, 65]
    for size in (1, 2, 5):  # a serial line splits messages anywhere
        split, commands = collecting_midi()
        for i in range(0, len(stream), size):
            split.receive_bytes(stream[i:i + size])
        assert notes_of(commands) == expected


def test_realtime_bytes_inside_a_message_do_not_break_it():
    midi, commands = collecting_midi()
    midi.receive_bytes([0x90, 60, CLOCK, 100, 62, START, 90], when=0.0)
    assert notes_of(commands) == [(60, 100), (62, 90)]
    assert c.Transport(True) in commands


def test_stray_bytes_undefined_status_and_bad_values_are_dropped():
    midi, commands = collecting_midi()
    midi.receive_bytes([60, 100, 0x7F])  # data bytes with no status yet
    midi.receive_bytes([0xF4, 0xF5, 0xF9, 0xFD, 0xF7, 1, 2])  # undefined status, a lone end
    midi.receive_bytes([0x90, 300, -1])  # not bytes at all (no port sends these)
    midi.receive_bytes([0x90, 61])  # a note-on cut short...
    midi.receive_bytes([0x80, 61, 0])  # ...by the next status byte
    assert notes_of(commands) == [(61, 0)]
    assert midi.decoder.stats.dropped_bytes >= 14


def test_every_status_byte_with_random_data_is_harmless():
    rng = random.Random(0)
    midi, commands = collecting_midi(MidiRouter({n: "cfg" for n in range(128)}, ["a", "b"]))
    for _ in range(20):
        for status in range(0x80, 0x100):
            midi.receive_bytes([status] + [rng.randrange(128) for _ in range(rng.randrange(4))])
    for command in commands:
        if isinstance(command, c.MelodyNote):
            assert 0 <= command.pitch <= 127 and 0 <= command.velocity <= 127
        elif isinstance(command, c.Set):
            assert 0 <= command.value <= 127
        elif isinstance(command, c.LoadPreset):
            assert command.name in ("a", "b")


def test_a_megabyte_of_random_bytes_leaves_the_decoder_in_sync():
    rng = np.random.default_rng(1)
    midi, commands = collecting_midi()
    garbage = rng.integers(0, 256, 1 << 20, dtype=np.uint8).tobytes()
    for start in range(0, len(garbage), 1000):
        midi.receive_bytes(garbage[start:start + int(rng.integers(1, 2000))])
    assert len(midi.decoder._data) <= 2  # never more than one message held
    commands.clear()
    midi.receive_bytes([0xF7, 0x90, 72, 80])  # the next clean message still gets through
    assert notes_of(commands) == [(72, 80)]


def test_sysex_flood_lets_notes_through_fast_in_bounded_memory():
    """10,000 sysex messages of up to 64 KB, each followed by a note and a clock tick."""
    rng = np.random.default_rng(2)
    body = rng.integers(0, 128, 64 * 1024 - 2, dtype=np.uint8).tobytes()
    lengths = rng.integers(0, len(body) + 1, 10_000)
    midi, commands = collecting_midi()

    def flood(first: int, count: int) -> tuple[int, float]:
        sent, started = 0, time.perf_counter()
        for i in range(first, first + count):
            sysex = b"\xf0" + body[:lengths[i]] + b"\xf7"
            midi.receive_bytes(sysex)
            midi.receive_bytes([0x90 | (i % 9), 40 + i % 80, 1 + i % 127])
            midi.receive_bytes([0x90 | (i % 9), 40 + i % 80, 0])
            sent += len(sysex)
        return sent, (time.perf_counter() - started) / count

    _, per_message = flood(0, 100)  # a quick look first: a slow decoder fails here, not later
    assert per_message < 1e-3  # mido's own parsing takes ~30 ms per 64 KB sysex
    sent, per_message = flood(100, len(lengths) - 100)
    assert len(notes_of(commands)) == 2 * len(lengths)  # every note on and off got through
    assert midi.decoder.stats.sysex == len(lengths)
    print(f"\nsysex flood: {len(lengths)} sysex, {sent / 1e6:.0f} MB, "
          f"{per_message * 1e6:.0f} us per sysex (+ its note on/off)")
    assert per_message < 1e-3

    commands.clear()
    tracemalloc.start()
    try:
        flood(0, 1000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    print(f"sysex flood: peak traced memory {peak / 1024:.0f} KiB over 1,000 sysex")
    assert peak < 512 * 1024  # one 64 KB message in flight, nothing kept


def test_an_unterminated_sysex_ends_at_the_next_status_byte_with_clock_inside():
    midi, commands = collecting_midi()
    midi.receive_bytes(b"\xf0" + bytes(range(128)) * 100)  # never ends...
    midi.receive_bytes([CLOCK])  # realtime inside sysex still counts
    midi.receive_bytes(bytes(range(50)))
    midi.receive_bytes([0x90, 64, 99])  # ...until a status byte
    assert notes_of(commands) == [(64, 99)]
    assert midi.decoder.stats.sysex == 1


def test_decoder_matches_mido_on_clean_messages():
    messages = [mido.Message("note_on", channel=3, note=10, velocity=5),
                mido.Message("pitchwheel", pitch=-300), mido.Message("aftertouch", value=9),
                mido.Message("songpos", pos=1000), mido.Message("song_select", song=3),
                mido.Message("quarter_frame", frame_type=2, frame_value=5),
                mido.Message("tune_request"), mido.Message("clock")]
    decoded = MidiDecoder().feed(b"".join(bytes(m.bytes()) for m in messages))
    assert decoded == messages


# -- notes ----------------------------------------------------------------------------------

def test_a_stuck_note_ends_and_does_not_keep_the_phrase():
    clock = FakeClock()
    midi, recorder = recording_midi(clock)
    midi.receive_bytes([0x90, 48, 100])  # its note-off is lost
    for i, pitch in enumerate([60, 62, 64]):
        clock.now = 1.0 + i
        midi.receive_bytes([0x90, pitch, 100])
        clock.now += 0.5
        midi.receive_bytes([0x80, pitch, 0])
    clock.now = 120.0  # two minutes later the player starts a new phrase
    midi.receive_bytes([0x90, 67, 100])
    clock.now = 121.0
    midi.receive_bytes([0x80, 67, 0])
    assert recorder.phrase(30.0) == [mr.Note(67, 0.0, 1.0)]
    assert recorder.current_pitch() == 67  # not the stuck 48
    assert recorder.held_count() == 0


def test_a_stuck_note_is_not_the_current_note_forever():
    clock = FakeClock()
    midi, recorder = recording_midi(clock)
    midi.receive_bytes([0x90, 50, 100])
    clock.now = 2.0
    midi.receive_bytes([0x90, 55, 100, 0x80, 55, 0])
    assert recorder.current_pitch() == 50  # held, as far as anyone can tell
    clock.now = mr.MAX_HOLD_SECONDS + 1.0
    assert recorder.current_pitch() == 55  # the last note played, not the stuck one


def test_held_notes_and_the_phrase_are_bounded_in_count_and_time():
    clock = FakeClock()
    midi, recorder = recording_midi(clock)
    for pitch in range(128):  # every key down, none up
        clock.now += 0.01
        midi.receive_bytes([0x90, pitch, 100])
    assert recorder.held_count() == mr.MAX_HELD
    for i in range(10 * 60 * 8):  # ten minutes of eighth notes at 120 BPM, no pause
        clock.now += 0.25
        midi.receive_bytes([0x90, 40 + i % 40, 90, 0x80, 40 + i % 40, 0])
    with recorder._lock:
        kept = list(recorder._closed)
    assert len(kept) <= mr.MAX_NOTES
    assert clock.now - min(on for _, on, _ in kept) <= mr.MAX_PHRASE_SECONDS
    assert_sane_line(recorder.phrase(30.0), 30.0)


def test_orphan_note_offs_and_velocity_zero_note_ons():
    clock = FakeClock()
    midi, recorder = recording_midi(clock)
    midi.receive_bytes([0x80, 70, 64, 0x90, 71, 0])  # offs for notes never played
    assert recorder.phrase(30.0) == [] and recorder.current_pitch() is None
    midi.receive_bytes([0x90, 72, 100])
    clock.now = 1.0
    midi.receive_bytes([0x90, 72, 0])  # velocity 0 is a note-off
    clock.now = 5.0
    assert recorder.phrase(30.0) == [mr.Note(72, 0.0, 1.0)] and recorder.held_count() == 0


def test_channel_chaos_keeps_a_sane_line_and_skips_drums():
    rng = random.Random(3)
    clock = FakeClock()
    midi, recorder = recording_midi(clock)
    for _ in range(20_000):
        clock.now += rng.expovariate(50.0)
        status = rng.choice((0x80, 0x90, 0x90, 0xA0, 0xB0, 0xE0)) | rng.randrange(16)
        midi.receive_bytes([status, rng.randrange(128), rng.choice((0, rng.randrange(128)))])
        assert recorder.held_count() <= mr.MAX_HELD
    assert_sane_line(recorder.phrase(30.0), 30.0)
    drums, commands = collecting_midi()
    drums.receive_bytes([0x99, 36, 100, 0x89, 36, 0])  # channel 10: percussion
    assert notes_of(commands) == []


# -- clock ----------------------------------------------------------------------------------

def clock_tempi(times) -> list[float]:
    midi, commands = collecting_midi()
    for when in times:
        midi.receive_bytes([CLOCK], when=when)
    return [x.bpm for x in commands if isinstance(x, c.Tempo)]


def jittered_clock(bpm: float, beats: int, jitter: float, dropped: float, seed: int):
    rng = np.random.default_rng(seed)
    ticks = np.arange(beats * 24) * 60.0 / bpm / 24 + rng.normal(0.0, jitter, beats * 24)
    return ticks[rng.random(len(ticks)) >= dropped]


@pytest.mark.parametrize("bpm", [90.0, 120.0, 180.0])
def test_clock_jitter_and_dropped_ticks_keep_the_tempo_within_2_bpm(bpm):
    """24 ppqn with ±2 ms Gaussian jitter and 2 % of ticks dropped, for 500 beats."""
    tempi = clock_tempi(jittered_clock(bpm, 500, 0.002, 0.02, seed=int(bpm)))
    error = max(abs(t - bpm) for t in tempi)
    print(f"\nclock {bpm:g} BPM, 2 ms jitter, 2 % dropped: {len(tempi)} tempo messages, "
          f"max error {error:.3f} BPM")
    assert tempi and error <= 2.0
    assert len(tempi) <= 500 / 24  # a steady clock is not announced over and over


def test_a_clock_that_stops_bursts_or_runs_wild_gives_no_absurd_tempo():
    rng = np.random.default_rng(4)
    steady = jittered_clock(120.0, 64, 0.001, 0.0, seed=5)
    bursts = []
    for when in steady:  # now and then a USB buffer arrives at once
        bursts.append(when)
        if rng.random() < 0.02:
            bursts += list(when + 1e-5 * np.arange(1, rng.integers(2, 48)))
    tempi = clock_tempi(bursts)
    assert tempi and all(abs(t - 120.0) <= 2.0 for t in tempi)
    stop_start = list(steady[:200]) + list(steady[200] + 5.0 + np.arange(200) * 0.025)
    tempi = clock_tempi(stop_start)  # stopped for 5 s, then 100 BPM
    assert all(abs(t - 120) <= 2 or abs(t - 100) <= 2 for t in tempi) and abs(tempi[-1] - 100) <= 2
    wild = np.cumsum(rng.exponential(0.02, 20_000))  # ticks at random
    uniform = np.cumsum(rng.uniform(0.0, 0.3, 20_000))
    backwards = np.concatenate([steady[:100], steady[:100]])
    for times in (wild, uniform, backwards):
        assert all(MIN_BPM <= t <= MAX_BPM for t in clock_tempi(times))
    assert clock_tempi(wild) == [] and clock_tempi(uniform) == []


@pytest.mark.parametrize(("before", "after"), [(120.0, 60.0), (60.0, 120.0), (90.0, 180.0)])
def test_a_tempo_change_is_followed_without_values_in_between(before, after):
    first = np.arange(16 * 24) * 60.0 / before / 24
    second = first[-1] + np.arange(1, 16 * 24 + 1) * 60.0 / after / 24
    tempi = clock_tempi(np.concatenate([first, second]))
    assert all(abs(t - before) <= 1 or abs(t - after) <= 1 for t in tempi)
    assert abs(tempi[-1] - after) <= 1


# -- transport ------------------------------------------------------------------------------

def test_start_stop_floods():
    midi, commands = collecting_midi()
    for i in range(1000):  # a stuck button: one start
        midi.receive_bytes([START], when=i * 1e-4)
    assert commands == [c.Transport(True)]
    commands.clear()
    for i in range(1000):  # a toggling one: every change passes, the last one wins
        midi.receive_bytes([START if i % 2 else STOP], when=1.0 + i * 1e-4)
    assert len(commands) == 1000 and commands[-1] == c.Transport(True)


def test_a_session_survives_a_flood_of_everything(session, replies):
    rng = np.random.default_rng(6)
    midi = MidiIn(MidiRouter(), lambda command: session.handle(command, None))
    kinds = [bytes([START]), bytes([STOP]), bytes([CLOCK]), bytes([0x90, 60, 100]),
             bytes([0x80, 60, 0]), b"\xf0" + bytes(1000) + b"\xf7", bytes([0xC0, 127])]
    for index in rng.integers(0, len(kinds), 5000):
        midi.receive_bytes(kinds[index])
    session.handle(parse_message("/indie/ping", []), None)
    replies.wait("/indie/pong")
    assert not session.worker.busy and len(session.jobs) == 0
    assert_sane_line(session.melody.phrase(30.0), 30.0)
    assert session.host_bpm == 0.0 or MIN_BPM <= session.host_bpm <= MAX_BPM


# -- a real port ----------------------------------------------------------------------------

def test_a_jack_midi_port_delivers_notes_and_clock_but_no_sysex():
    """rtmidi's own callback path, end to end: another JACK client plays into our port."""
    import shutil

    if shutil.which("jackd") is None:
        pytest.skip("jackd is not installed")
    import rtmidi

    from bridge.jack_probe import JackServer

    with JackServer(48000, 256, portaudio=False):
        keys = rtmidi.MidiOut(rtapi=rtmidi.API_UNIX_JACK)
        keys.open_virtual_port("indie-test-keys")
        midi, commands = collecting_midi()
        try:
            assert midi.open_port("indie-test-keys")
            _wait_until_connected(keys, commands)
            keys.send_message([0x90, 60, 100])
            for size in (1000, 16_000) * 50:  # a sysex flood: dropped before Python sees it
                keys.send_message([0xF0, *([0x11] * size), 0xF7])
            keys.send_message([0x80, 60, 0])
            keys.send_message([START])
            deadline = time.monotonic() + 5.0
            while len(commands) < 3 and time.monotonic() < deadline:
                time.sleep(0.01)
        finally:
            midi.close()
            keys.close_port()
            keys.delete()
    assert notes_of(commands) == [(60, 100), (60, 0)] and c.Transport(True) in commands
    assert midi.decoder.stats.sysex == 0


def _wait_until_connected(keys, commands: list) -> None:
    """JACK connects ports asynchronously: what is sent before the connection is live is lost.
    Play a probe note until it arrives, release it, and forget both."""
    deadline = time.monotonic() + 5.0
    while not commands and time.monotonic() < deadline:
        keys.send_message([0x90, 40, 1])
        time.sleep(0.05)
    keys.send_message([0x80, 40, 0])
    while (40, 0) not in notes_of(commands) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert (40, 0) in notes_of(commands), "the JACK MIDI connection never came up"
    commands.clear()


def test_a_malformed_rtmidi_message_is_not_read_as_running_status():
    """rtmidi's JACK backend delivered [126, 65, 0] under a sysex flood: after a note-on it
    would be read as another note-on if running status carried over between callbacks."""
    midi, commands = collecting_midi()
    midi._on_rtmidi(([0x90, 60, 100], 0.0))
    midi._on_rtmidi(([126, 65, 0], 0.001))
    midi._on_rtmidi(([0x90, 62], 0.001))  # cut short: not completed by the next message
    midi._on_rtmidi(([100, 0x80, 60, 0], 0.001))
    assert notes_of(commands) == [(60, 100), (60, 0)]
