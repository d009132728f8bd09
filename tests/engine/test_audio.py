"""Audio I/O: round trips, resampling, and a clear error for every kind of bad file."""

import logging
import os

import numpy as np
import pytest
import soundfile as sf
import torch

from engine.audio import SAMPLE_RATE, AudioFileError, audio_duration, read_audio, write_audio


def sine(freq: float, rate: int, seconds: float = 1.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(rate * seconds))) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def peak_hz(audio: torch.Tensor, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(audio.numpy()[0]))
    return float(np.fft.rfftfreq(audio.shape[-1], 1 / rate)[spectrum.argmax()])


def flac_bytes(tmp_path) -> bytes:
    source = tmp_path / "source.flac"
    sf.write(source, sine(440, SAMPLE_RATE, 2.0), SAMPLE_RATE)
    data = source.read_bytes()
    source.unlink()
    return data


# --- reading -------------------------------------------------------------------------------


@pytest.mark.parametrize("rate", [16000, 32000, 44100, 48000])
@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("suffix", [".wav", ".flac"])
def test_read_any_rate_and_channels_as_mono_32k(tmp_path, rate, channels, suffix):
    tone = sine(1000, rate, seconds=1.0)
    frames = np.stack([tone] * channels, axis=1)
    path = tmp_path / f"in{suffix}"
    sf.write(path, frames, rate)

    audio = read_audio(path)

    assert audio.dtype == torch.float32
    assert audio.shape[0] == 1
    assert abs(audio.shape[1] - SAMPLE_RATE) <= 2  # one second
    assert abs(peak_hz(audio, SAMPLE_RATE) - 1000) <= 1.0
    assert 0.45 < audio.abs().max().item() < 0.55


def test_channels_are_averaged(tmp_path):
    left = np.full(1000, 0.5, np.float32)
    right = np.full(1000, -0.25, np.float32)
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([left, right], axis=1), SAMPLE_RATE, subtype="FLOAT")
    audio = read_audio(path)
    assert audio.shape == (1, 1000)
    assert torch.allclose(audio, torch.full((1, 1000), 0.125))


def test_read_at_other_rate(tmp_path):
    path = tmp_path / "a.wav"
    sf.write(path, sine(440, 48000), 48000)
    audio = read_audio(path, sample_rate=16000)
    assert audio.shape == (1, 16000)
    assert abs(peak_hz(audio, 16000) - 440) <= 1.0


def test_read_ogg_vorbis(tmp_path):
    path = tmp_path / "clip.ogg"
    sf.write(path, sine(660, 44100), 44100, format="OGG", subtype="VORBIS")
    audio = read_audio(path)
    assert audio.shape[0] == 1
    assert abs(audio.shape[1] - SAMPLE_RATE) <= 2
    assert abs(peak_hz(audio, SAMPLE_RATE) - 660) <= 1.0
    assert audio_duration(path) == pytest.approx(1.0, abs=1e-3)


def test_audio_duration(tmp_path):
    path = tmp_path / "d.flac"
    sf.write(path, np.zeros((44100 * 3 // 2, 2), np.float32), 44100)
    assert audio_duration(path) == pytest.approx(1.5)


def test_rejects_bad_sample_rate(tmp_path):
    path = write_audio(tmp_path / "a.wav", sine(440, SAMPLE_RATE))
    with pytest.raises(ValueError, match="positive"):
        read_audio(path, sample_rate=0)
    with pytest.raises(ValueError, match="integer"):
        read_audio(path, sample_rate=32000.5)


# --- bad files -----------------------------------------------------------------------------


def assert_audio_error(path, *fragments: str) -> None:
    """Both readers fail with an AudioFileError naming the file and saying why."""
    for reader in (read_audio, audio_duration):
        with pytest.raises(AudioFileError) as caught:
            reader(path)
        message = str(caught.value)
        assert os.path.basename(path) in message
        assert caught.value.path.name == os.path.basename(path)
        for fragment in fragments:
            assert fragment in message
        # Translated, not chained: no libsndfile traceback behind it.
        assert caught.value.__cause__ is None
        assert caught.value.__suppress_context__ or caught.value.__context__ is None


def test_missing_file(tmp_path):
    assert_audio_error(tmp_path / "nope.wav", "no such audio file")


def test_directory(tmp_path):
    folder = tmp_path / "folder.wav"
    folder.mkdir()
    assert_audio_error(folder, "directory")


def test_empty_file(tmp_path):
    path = tmp_path / "blank.wav"
    path.touch()
    assert_audio_error(path, "empty (0 bytes)")


def test_text_file_renamed_wav(tmp_path):
    path = tmp_path / "notes.wav"
    path.write_text("these are my lyrics, not audio\n" * 20)
    assert_audio_error(path, "not a readable audio file (")


def test_wav_with_zero_frames(tmp_path):
    path = tmp_path / "silent.wav"
    sf.write(path, np.zeros((0, 1), np.float32), SAMPLE_RATE)
    assert_audio_error(path, "contains no audio")


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.99])
def test_truncated_wav(tmp_path, keep):
    # libsndfile itself would silently return the shorter audio.
    full = tmp_path / "full.wav"
    sf.write(full, sine(440, SAMPLE_RATE, 2.0), SAMPLE_RATE)
    data = full.read_bytes()
    path = tmp_path / "cut.wav"
    path.write_bytes(data[: int(len(data) * keep)])
    assert len(sf.read(path)[0]) > 0  # the premise: libsndfile does not complain
    assert_audio_error(path, "truncated")


def test_truncated_aiff(tmp_path):
    # AIFF is what many DAWs export; libsndfile reads a cut-off one as short audio, too.
    full = tmp_path / "full.aiff"
    sf.write(full, sine(440, SAMPLE_RATE, 2.0), SAMPLE_RATE)
    data = full.read_bytes()
    path = tmp_path / "cut.aiff"
    path.write_bytes(data[: len(data) // 2])
    assert_audio_error(path, "truncated or corrupt AIFF file")
    assert read_audio(full).shape == (1, 2 * SAMPLE_RATE)


def test_wav_cut_right_after_header(tmp_path):
    full = tmp_path / "full.wav"
    sf.write(full, sine(440, SAMPLE_RATE), SAMPLE_RATE)
    path = tmp_path / "header_only.wav"
    path.write_bytes(full.read_bytes()[:44])
    assert_audio_error(path, "truncated")


def test_wav_with_extra_chunks_is_not_truncated(tmp_path):
    # Float WAVs carry 'fact' and 'PEAK' chunks before 'data'; the chunk walk must skip them.
    path = tmp_path / "float.wav"
    sf.write(path, sine(440, SAMPLE_RATE), SAMPLE_RATE, subtype="FLOAT")
    assert read_audio(path).shape == (1, SAMPLE_RATE)


@pytest.mark.parametrize("keep", [0.05, 0.3, 0.6, 0.95])
def test_truncated_flac(tmp_path, keep):
    data = flac_bytes(tmp_path)
    path = tmp_path / "cut.flac"
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(AudioFileError, match="truncated") as caught:
        read_audio(path)
    assert "cut.flac" in str(caught.value)


def test_flac_header_claiming_unknown_length_does_not_crash(tmp_path):
    # Zero the 36-bit total-samples field of STREAMINFO: libsndfile then reports 2**63 - 1
    # frames, which a naive read would try to allocate in one go.
    data = bytearray(flac_bytes(tmp_path))
    info = 8  # after "fLaC" and the metadata block header
    data[info + 13] &= 0xF0
    data[info + 14 : info + 18] = bytes(4)
    path = tmp_path / "unknown.flac"
    path.write_bytes(bytes(data))
    try:
        audio = read_audio(path)
    except AudioFileError as e:  # what this libsndfile does: it fails to read past the end
        assert "unknown.flac" in str(e)
    else:
        assert audio.shape == (1, 2 * SAMPLE_RATE)


def test_non_finite_samples(tmp_path):
    path = tmp_path / "nan.wav"
    samples = np.array([0.1, np.nan, np.inf, 0.2] * 10, np.float32)
    sf.write(path, samples, SAMPLE_RATE, subtype="FLOAT")
    with pytest.raises(AudioFileError, match="20 NaN or infinite samples") as caught:
        read_audio(path)
    assert "nan.wav" in str(caught.value)


def test_error_is_a_value_error_and_picklable(tmp_path):
    import pickle

    with pytest.raises(ValueError) as caught:
        read_audio(tmp_path / "gone.flac")
    copy = pickle.loads(pickle.dumps(caught.value))
    assert str(copy) == str(caught.value)
    assert copy.path == caught.value.path


# --- writing -------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".wav", ".flac"])
def test_write_read_round_trip(tmp_path, suffix):
    tone = sine(440, SAMPLE_RATE, 0.5)
    path = write_audio(tmp_path / f"out{suffix}", torch.from_numpy(tone))
    assert path == tmp_path / f"out{suffix}"
    info = sf.info(path)
    assert (info.samplerate, info.channels, info.subtype) == (SAMPLE_RATE, 1, "PCM_16")
    back = read_audio(path)
    assert back.shape == (1, len(tone))
    assert torch.allclose(back[0], torch.from_numpy(tone), atol=1 / 2**14)
    assert audio_duration(path) == pytest.approx(0.5)


@pytest.mark.parametrize(
    "shape, channels",
    [((1000,), 1), ((1, 1000), 1), ((2, 1000), 2), ((1, 2, 1000), 2), ((1, 1, 1000), 1)],
)
def test_write_shapes(tmp_path, shape, channels):
    audio = np.random.default_rng(0).uniform(-0.5, 0.5, shape).astype(np.float64)
    path = write_audio(tmp_path / "s.wav", audio, 16000)
    info = sf.info(path)
    assert (info.channels, info.frames, info.samplerate) == (channels, 1000, 16000)


def test_write_stereo_keeps_channels_apart(tmp_path):
    audio = torch.stack([torch.full((100,), 0.5), torch.full((100,), -0.5)])
    path = write_audio(tmp_path / "st.flac", audio)
    frames, _ = sf.read(path)
    assert np.allclose(frames[:, 0], 0.5, atol=1e-4)
    assert np.allclose(frames[:, 1], -0.5, atol=1e-4)


def test_float_subtype_keeps_values_beyond_one(tmp_path):
    path = write_audio(tmp_path / "f.wav", np.array([1.5, -2.0, 0.25], np.float32), subtype="FLOAT")
    assert sf.info(path).subtype == "FLOAT"
    frames, _ = sf.read(path, dtype="float32")
    assert frames.tolist() == [1.5, -2.0, 0.25]


def test_integer_subtype_clips_and_warns_once(tmp_path, caplog):
    audio = np.array([1.5, -3.0, 0.5, 2.0, 0.0], np.float32)
    original = audio.copy()
    with caplog.at_level(logging.WARNING, logger="engine.audio"):
        path = write_audio(tmp_path / "loud.wav", audio)
    frames, _ = sf.read(path, dtype="float32")
    assert frames[0] > 0.99 and frames[1] <= -0.99 and frames[3] > 0.99
    assert frames[2] == pytest.approx(0.5, abs=1e-4)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "clipped 3 of 5" in warnings[0].getMessage()
    assert np.array_equal(audio, original)  # the caller's buffer is untouched


def test_no_warning_when_in_range(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="engine.audio"):
        write_audio(tmp_path / "ok.wav", sine(440, SAMPLE_RATE))
    assert not caplog.records


def test_subtype_override(tmp_path):
    path = write_audio(tmp_path / "hi.flac", sine(440, SAMPLE_RATE), subtype="pcm_24")
    assert sf.info(path).subtype == "PCM_24"


def test_unknown_suffix_lists_supported(tmp_path):
    with pytest.raises(AudioFileError) as caught:
        write_audio(tmp_path / "song.mp3", sine(440, SAMPLE_RATE))
    message = str(caught.value)
    assert "song.mp3" in message and ".wav" in message and ".flac" in message
    assert not (tmp_path / "song.mp3").exists()


def test_invalid_subtype_for_format(tmp_path):
    with pytest.raises(AudioFileError, match="'FLOAT' is not available for FLAC"):
        write_audio(tmp_path / "x.flac", sine(440, SAMPLE_RATE), subtype="FLOAT")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    "audio, message",
    [
        (np.zeros((2, 2, 100), np.float32), "shaped"),
        (np.zeros((1000, 2), np.float32), "channels first"),
        (np.zeros(0, np.float32), "no samples"),
        (np.array([0.0, np.nan], np.float32), "NaN"),
        (np.zeros(100, np.int16), "floating-point"),
        (torch.zeros(100, dtype=torch.int32), "floating-point"),
    ],
)
def test_write_rejects_bad_audio(tmp_path, audio, message):
    with pytest.raises(ValueError, match=message):
        write_audio(tmp_path / "bad.wav", audio)
    assert os.listdir(tmp_path) == []


def test_write_accepts_gpu_style_tensors(tmp_path):
    audio = torch.zeros(2, 100, dtype=torch.bfloat16, requires_grad=True)
    path = write_audio(tmp_path / "t.wav", audio)
    assert sf.info(path).channels == 2


def test_failed_write_keeps_previous_file(tmp_path):
    path = write_audio(tmp_path / "take.flac", sine(440, SAMPLE_RATE))
    before = path.read_bytes()
    with pytest.raises(AudioFileError, match="could not write"):
        write_audio(path, sine(440, SAMPLE_RATE), sample_rate=10_000_000)  # too fast for FLAC
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["take.flac"]
