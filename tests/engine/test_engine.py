"""The public Engine: lengths, melody, continuation, streaming, cancel, bad input."""

import threading

import mido
import numpy as np
import pytest
import torch

from engine import Engine, EngineError, GeneratedAudio
from engine.audio import write_audio
from engine.conditioning import Conditions
from engine.generate import SamplingParams, generate_codes
from engine.inputs import melody_chroma, read_midi_melody, tempo_from_prompt
from engine.melody import Note
from tests.tiny_engine import K, export_tiny_weights, tiny_engine

RATE = 32000


@pytest.fixture(scope="module")
def engine() -> Engine:
    return tiny_engine("delay", block_frames=3)


def write_midi(path, notes, drums=()):
    """notes: (pitch, start beat, end beat) at 120 bpm (a beat = 0.5 s)."""
    midi = mido.MidiFile(ticks_per_beat=480)
    track = mido.MidiTrack()
    midi.tracks.append(track)
    events = [(s, "note_on", p, 0) for p, s, _ in notes] + \
             [(e, "note_off", p, 0) for p, _, e in notes] + \
             [(s, "note_on", p, 9) for p, s, _ in drums] + \
             [(e, "note_off", p, 9) for p, _, e in drums]
    now = 0
    for beat, kind, pitch, channel in sorted(events, key=lambda e: (e[0], e[1] == "note_on")):
        tick = round(beat * 480)
        track.append(mido.Message(kind, note=pitch, velocity=80, channel=channel,
                                  time=tick - now))
        now = tick
    midi.save(path)
    return path


def test_same_seed_same_audio_and_other_seed_other_audio(engine):
    a = engine.generate("solo piano", seconds=0.3, seed=5)
    b = engine.generate("solo piano", seconds=0.3, seed=5)
    c = engine.generate("solo piano", seconds=0.3, seed=6)
    assert isinstance(a, GeneratedAudio) and a.sample_rate == RATE and not a.cancelled
    assert a.audio.dtype == np.float32 and a.audio.shape == (round(0.3 * RATE),)
    assert np.array_equal(a.audio, b.audio) and not np.array_equal(a.audio, c.audio)


def test_stream_concatenated_equals_generate(engine):
    steps_at_first_block, done = [], [0]
    stream = engine.stream("string quartet", seconds=0.5, seed=9, cfg=2.0,
                           progress=lambda d, t: done.__setitem__(0, d))
    assert stream.params["seed"] == 9
    blocks = []
    for block in stream:
        if not blocks:
            steps_at_first_block.append(done[0])
        blocks.append(block)
    whole = engine.generate("string quartet", seconds=0.5, seed=9, cfg=2.0)
    assert np.array_equal(np.concatenate(blocks), whole.audio)
    assert len(blocks) > 3  # audio came out while frames were still being generated
    assert steps_at_first_block == [K]  # delay: frame 0 is complete after K steps


def test_streamed_blocks_equal_an_offline_decode_of_the_token_loop(engine):
    """The engine = the token loop on its conditions + the codec's offline decode, cut."""
    take = engine.generate("two violins", seconds=0.25, seed=4, top_k=5)
    frames = -(-len(take.audio) // 640)
    text, mask = engine.text_encoder.encode(["two violins"])
    conditions = Conditions(text=text, text_mask=mask, melody=torch.zeros(1, 12, frames),
                            bpm=torch.zeros(1), beat_offset=torch.zeros(1))
    codes = generate_codes(engine.lm, conditions, frames, "delay",
                           SamplingParams(top_k=5, seed=4))
    offline = engine.codec.decode(codes)[0, 0, :len(take.audio)].numpy()
    assert np.allclose(take.audio, offline, atol=1e-5)


def test_a_continuation_carries_on_from_the_end_of_the_clip(engine):
    clip = (0.2 * np.sin(2 * np.pi * 330 * np.arange(7000) / RATE)).astype("f4")
    take = engine.generate("a cello", seconds=0.1, seed=8, continue_from=clip)
    context = 7000 // 640  # whole frames, counted back from the clip's end
    prefix = engine.codec.encode(torch.from_numpy(clip[7000 - context * 640:])[None, None])
    text, mask = engine.text_encoder.encode(["a cello"])
    conditions = Conditions(text=text, text_mask=mask, melody=torch.zeros(1, 12, context + 5),
                            bpm=torch.zeros(1), beat_offset=torch.zeros(1))
    new = generate_codes(engine.lm, conditions, 5, "delay", SamplingParams(seed=8), prefix)
    whole = engine.codec.decode(torch.cat([prefix, new], dim=-1))[0, 0].numpy()
    assert np.allclose(take.audio, whole[context * 640:][:len(take.audio)], atol=1e-5)


@pytest.mark.parametrize(("bars", "bpm", "beats"), [(2, 97.0, 4), (1.5, 133.0, 3), (1, 400, 4)])
def test_bars_at_a_tempo_give_the_exact_sample_count(engine, bars, bpm, beats):
    take = engine.generate("folk duo", bars=bars, bpm=bpm, beats_per_bar=beats, seed=0)
    assert len(take.audio) == round(bars * beats * 60 / bpm * RATE)
    assert take.params["bars"] == bars and take.params["seconds"] is None


def test_tempo_stated_in_the_prompt_sets_the_bar_length(engine):
    assert tempo_from_prompt("a reel, 150 BPM, D major") == 150.0
    assert tempo_from_prompt("no tempo here") is None
    take = engine.generate("brass band at 150 bpm", bars=1, seed=0)
    assert len(take.audio) == round(4 * 60 / 150 * RATE)


def test_params_replay_the_same_audio(engine, tmp_path):
    melody = [Note(60, 0.0, 0.1), Note(64, 0.1, 0.3)]
    first = engine.generate("choir", seconds=0.3, melody=melody, top_p=0.9, temperature=0.8)
    again = engine.generate(**first.params)
    assert isinstance(first.params["seed"], int)
    assert np.array_equal(first.audio, again.audio)


def test_melody_from_midi_takes_the_top_line_and_skips_drums(tmp_path):
    path = write_midi(tmp_path / "m.mid", [(60, 0, 2), (67, 0, 1), (62, 2, 4)],
                      drums=[(90, 0, 4)])
    notes = read_midi_melody(path)  # at 120 bpm a beat is 0.5 s
    # 67 and 60 start together: the top line keeps 67; 62 follows after a rest.
    assert [(n.pitch, n.onset, n.offset) for n in notes] == [(67, 0.0, 0.5), (62, 1.0, 2.0)]
    chroma = melody_chroma(path, RATE, 50.0, 150)  # 3 s at 50 frames/s
    assert chroma[67 % 12, :25].all() and not chroma[:, 25:50].any()
    assert chroma[62 % 12, 50:100].all() and not chroma[:, 100:].any()


def test_melody_from_audio_finds_the_pitch_class(tmp_path):
    t = np.arange(RATE) / RATE
    path = write_audio(tmp_path / "a.wav", (0.3 * np.sin(2 * np.pi * 440 * t)).astype("f4"))
    chroma = melody_chroma(path, RATE, 50.0, 60)
    assert chroma[9, 5:45].all()  # A
    assert not chroma[:, 51:].any()  # past the end of the 1 s file: no melody


def test_melody_changes_the_output(engine, tmp_path):
    path = write_midi(tmp_path / "m.mid", [(72, 0, 1)])
    plain = engine.generate("flute", seconds=0.3, seed=1)
    with_melody = engine.generate("flute", seconds=0.3, seed=1, melody=path)
    assert not np.array_equal(plain.audio, with_melody.audio)
    assert with_melody.params["melody"] == str(path)


def test_continuation_primes_the_lm_with_the_clip(engine, tmp_path):
    clip = (0.2 * np.sin(2 * np.pi * 220 * np.arange(int(0.41 * RATE)) / RATE)).astype("f4")
    fed = []
    real_step = engine.lm.step

    def recording_step(state, inputs):
        fed.append(inputs.shape[-1])
        return real_step(state, inputs)

    engine.lm.step = recording_step
    try:
        take = engine.generate("cello", seconds=0.2, seed=2, continue_from=clip)
        path = write_audio(tmp_path / "clip.wav", clip)
        from_file = engine.generate("cello", seconds=0.2, seed=2, continue_from=path)
    finally:
        del engine.lm.step
    frames = int(0.41 * RATE) // 640  # whole frames of the clip
    assert fed[0] == frames + 1  # one prefill: the start token and the clip's frames
    assert len(take.audio) == round(0.2 * RATE)
    fresh = engine.generate("cello", seconds=0.2, seed=2)
    assert not np.array_equal(take.audio, fresh.audio)
    assert np.allclose(take.audio, from_file.audio, atol=1e-3)  # 16-bit file vs float array
    assert from_file.params["continue_from"] == str(path)


def test_cancel_from_another_thread_stops_within_one_step(engine):
    done = []

    def progress(step, total):
        done.append(step)
        if step == 7:
            canceller = threading.Thread(target=engine.cancel)
            canceller.start()
            canceller.join()

    take = engine.generate("organ", seconds=2.0, seed=0, progress=progress)
    assert take.cancelled and max(done) == 7  # the step after the cancel never ran
    assert len(take.audio) == (7 - K + 1) * 640  # the frames complete at the cancel
    after = engine.generate("organ", seconds=0.1, seed=0)  # the next job is not cancelled
    assert not after.cancelled and len(after.audio) == round(0.1 * RATE)


def test_stream_cancelled_midway_ends_and_frees_the_engine(engine):
    stream = engine.stream("harp", seconds=1.0, seed=0)
    blocks = [next(stream)]
    engine.cancel()
    blocks += list(stream)
    assert sum(map(len, blocks)) < RATE
    assert len(engine.generate("harp", seconds=0.1, seed=0).audio) == round(0.1 * RATE)


def test_closing_a_stream_early_frees_the_engine(engine):
    stream = engine.stream("harp", seconds=1.0, seed=0)
    next(stream)
    with pytest.raises(EngineError, match="already running in this thread"):
        engine.generate("harp", seconds=0.1, seed=0)  # would wait for itself forever
    stream.close()
    assert len(engine.generate("harp", seconds=0.1, seed=0).audio) == round(0.1 * RATE)


def test_a_second_generation_waits_for_the_first(engine):
    order = []
    stream = engine.stream("viola", seconds=0.2, seed=0)
    next(stream)  # the first generation holds the engine

    def second():
        engine.generate("viola", seconds=0.1, seed=0)
        order.append("second")

    thread = threading.Thread(target=second)
    thread.start()
    thread.join(timeout=0.3)
    order.append("first")
    list(stream)
    thread.join(timeout=10)
    assert order == ["first", "second"]


@pytest.mark.parametrize(("kwargs", "message"), [
    (dict(prompt="   ", seconds=1.0), "prompt is empty"),
    (dict(prompt="x", seconds=0.0), "positive"),
    (dict(prompt="x", seconds=-2.0), "positive"),
    (dict(prompt="x", seconds=1e6), "at most"),
    (dict(prompt="x", seconds=float("nan")), "positive"),
    (dict(prompt="x"), "give the length"),
    (dict(prompt="x", bars=2), "needs a tempo"),
    (dict(prompt="x", seconds=1.0, bars=2, bpm=100), "not both"),
    (dict(prompt="x", seconds=1.0, bpm=0), "bpm"),
    (dict(prompt="x", bars=1, bpm=100, beats_per_bar=0), "beats_per_bar"),
    (dict(prompt="x", bars=-1, bpm=100), "bars must be"),
    (dict(prompt="x", seconds=1.0, pattern="zigzag"), "zigzag"),
    (dict(prompt="x", seconds=1.0, melody="missing.mid"), "no such melody"),
    (dict(prompt="x", seconds=1.0, melody="missing.wav"), "melody"),
    (dict(prompt="x", seconds=1.0, melody=[(200, 0.0, 1.0)]), "note 0"),
    (dict(prompt="x", seconds=1.0, top_p=2.0), "top_p"),
    (dict(prompt="x", seconds=1.0, seed="abc"), "seed"),
    (dict(prompt="x", seconds=1.0, continue_from=np.zeros(10, "f4")), "shorter than one"),
])
def test_bad_input_is_an_engine_error_before_any_output(engine, kwargs, message):
    with pytest.raises(EngineError, match=message):
        engine.stream(**kwargs)  # raised by the call itself, not on the first block
    with pytest.raises(EngineError, match=message):
        engine.generate(**kwargs)


def test_unreadable_melody_file_is_an_engine_error(engine, tmp_path):
    garbage = tmp_path / "tune.mid"
    garbage.write_bytes(b"this is not midi at all")
    with pytest.raises(EngineError, match="MIDI"):
        engine.generate("x", seconds=0.1, melody=garbage)
    empty = write_midi(tmp_path / "empty.mid", [], drums=[(36, 0, 1)])
    with pytest.raises(EngineError, match="no pitched notes"):
        engine.generate("x", seconds=0.1, melody=empty)


def test_every_pattern_and_its_own_maximum(engine):
    assert engine.max_seconds == pytest.approx(engine.max_seconds_for("delay"))
    assert engine.max_seconds_for("flatten") < engine.max_seconds_for("parallel") / 3
    for pattern in ("parallel", "flatten", "coarse_first"):
        take = engine.generate("quartet", seconds=0.1, seed=0, pattern=pattern)
        assert len(take.audio) == round(0.1 * RATE)
    with pytest.raises(EngineError, match="at most"):
        engine.generate("x", seconds=engine.max_seconds_for("parallel"), pattern="flatten")


def test_load_exported_weights_with_the_real_text_encoder(tmp_path):
    codec, lm = export_tiny_weights(tmp_path)
    engine = Engine.load(codec=codec, lm=lm, threads=1)
    torch.set_num_threads(2)  # the caller's setting, restored after each generation
    assert engine.weights == {"codec": str(codec), "lm": str(lm)}
    a = engine.generate("warm string quartet, 90 bpm, D minor", seconds=0.2, seed=3)
    b = engine.generate("fast brass band, 140 bpm", seconds=0.2, seed=3)
    assert len(a.audio) == round(0.2 * RATE) and not np.array_equal(a.audio, b.audio)
    assert torch.get_num_threads() == 2
