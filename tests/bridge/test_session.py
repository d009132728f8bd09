"""The session's actions with the fake engine, no sockets: jobs, replies, files, security."""

import json
import os
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from bridge.osc import commands as c
from bridge.osc.addresses import parse_message

SENDER = ("127.0.0.1", 55555)


def send(session, address, *args):
    session.handle(parse_message(address, list(args)), SENDER)


def test_generate_replies_in_order_and_writes_clip_and_sidecar(session, replies, folders):
    send(session, "/indie/generate", "warm strings", 1.0, 42, "take1")
    done = replies.wait("/indie/done")
    order = [a for _, a, args in replies.items if args and args[0] == "take1"]
    assert order[0] == "/indie/queued" and order[1] == "/indie/started"
    assert order[-2:] == ["/indie/progress", "/indie/done"]
    job, path, seconds = done
    assert job == "take1" and seconds == 1.0
    assert replies.items[0][0] == ("127.0.0.1", 9001)  # the sender's host, the reply port
    audio, rate = sf.read(path)
    assert rate == 32000 and len(audio) == 32000
    assert os.path.dirname(path) == str(folders.out.resolve())
    meta = json.loads(Path(path).with_suffix(".json").read_text())
    assert meta["params"]["seed"] == 42 and meta["params"]["prompt"] == "warm strings"
    assert meta["job"] == "take1" and meta["seconds"] == 1.0
    progress = [args[1] for args in replies.of("/indie/progress")]
    assert progress == sorted(progress) and progress[-1] == 1.0
    assert len(progress) < 50 // 2  # throttled: 50 blocks, far fewer messages


def test_same_seed_same_audio_random_seed_recorded(session, replies):
    send(session, "/indie/generate", "a", 0.2, 5, "a1")
    send(session, "/indie/generate", "a", 0.2, 5, "a2")
    first = replies.wait("/indie/done", lambda a: a[0] == "a1")[1]
    second = replies.wait("/indie/done", lambda a: a[0] == "a2")[1]
    send(session, "/indie/generate", "a", 0.2)  # no id, no seed: both made up
    third = replies.wait("/indie/done", lambda a: a[0] == "j3")[1]
    assert np.array_equal(sf.read(first)[0], sf.read(second)[0])
    seed = json.loads(Path(third).with_suffix(".json").read_text())["params"]["seed"]
    assert isinstance(seed, int) and seed >= 0


def test_bars_at_host_tempo_are_exact_and_condition_the_engine(session, replies, fake_engine):
    send(session, "/indie/tempo", 120.0)
    send(session, "/indie/set", "bars", 2)
    send(session, "/indie/generate", "drums", 0, -1, "b1")
    path = replies.wait("/indie/done")[1]
    assert len(sf.read(path)[0]) == 2 * 4 * 60 / 120 * 32000
    call = fake_engine.calls[-1]
    assert call["bars"] == 2 and call["bpm"] == 120.0


def test_an_explicit_bpm_setting_wins_over_the_host(session, replies, fake_engine):
    send(session, "/indie/tempo", 120.0)
    send(session, "/indie/set", "bpm", 90)
    send(session, "/indie/generate", "x", 0.1)
    replies.wait("/indie/done")
    assert fake_engine.calls[-1]["bpm"] == 90.0


def test_cancel_mid_generation(session, replies, fake_engine, folders):
    fake_engine.step_seconds = 0.02
    send(session, "/indie/generate", "long", 20.0, 1, "long1")
    replies.wait("/indie/progress")
    sent = time.monotonic()
    send(session, "/indie/cancel", "long1")
    cancelled = replies.wait("/indie/cancelled")
    latency = time.monotonic() - sent
    assert cancelled[0] == "long1" and 0 < cancelled[1] < 20.0
    assert latency < 0.1
    assert replies.wait("/indie/ack", lambda a: a[0] == "/indie/cancel")[1] == "long1"
    assert not list(folders.out.glob("*.wav"))  # nothing half-made
    send(session, "/indie/generate", "after", 0.1, 1, "after")
    assert replies.wait("/indie/done", lambda a: a[0] == "after")


def test_a_full_queue_is_an_error_and_queued_jobs_cancel(session, replies, fake_engine):
    fake_engine.step_seconds = 0.02
    send(session, "/indie/generate", "p", 10.0, 1, "q0")
    replies.wait("/indie/started")  # running: the queue (2 places) is empty again
    for index in range(1, 4):
        send(session, "/indie/generate", "p", 10.0, 1, f"q{index}")
    error = replies.wait("/indie/error")
    assert error[0] == "q3" and error[1] == "queue_full"
    send(session, "/indie/cancel")
    for name in ("q0", "q1", "q2"):
        replies.wait("/indie/cancelled", lambda a, n=name: a[0] == n)


def test_paths_from_messages_stay_in_their_folders(session, replies, folders, tmp_path):
    secret = tmp_path / "secret.wav"
    sf.write(secret, np.zeros(640), 32000)
    (folders.inputs / "link.wav").symlink_to(secret)
    for name in ("../secret.wav", str(secret), "link.wav", "~/x.wav"):
        send(session, "/indie/continue", name, 1.0, 1, "c1")
        assert replies.wait("/indie/error")[1] == "path_refused", name
        replies.items.clear()
    send(session, "/indie/continue", "missing.wav", 1.0, 1, "c2")
    assert replies.wait("/indie/error")[1:3][0] == "not_found"


def test_continue_passes_the_clip_from_the_input_folder(session, replies, folders, fake_engine):
    sf.write(folders.inputs / "bounce.wav", np.zeros(3200), 32000)
    send(session, "/indie/continue", "bounce.wav", 0.5)
    replies.wait("/indie/done")
    assert fake_engine.calls[-1]["continue_from"] == (folders.inputs / "bounce.wav").resolve()


def test_presets_load_by_name_only_from_the_presets_folder(session, replies, fake_engine):
    send(session, "/indie/preset", "synth-pad")
    assert replies.wait("/indie/ack") == ("/indie/preset", "synth-pad")
    assert session.settings.top_p == 0.9 and "in A minor" in session.settings.prompt
    send(session, "/indie/preset", "nope")
    error = replies.wait("/indie/error")
    assert error[1] == "bad_preset" and "available" in error[2] and "solo-piano" in error[2]


def test_render_a_preset_over_osc(session, replies, fake_engine):
    send(session, "/indie/render", "folk-tune", "r1")
    path = replies.wait("/indie/done", timeout=10)[1]
    assert len(sf.read(path)[0]) == int(9.6 * 32000)
    call = fake_engine.calls[-1]
    assert call["seed"] == 100 and call["melody"][0].pitch == 64  # the preset's MIDI melody


def test_melody_notes_reach_the_engine(session, replies, fake_engine):
    send(session, "/indie/melody/note", 67, 100)
    time.sleep(0.05)
    send(session, "/indie/melody/note", 67, 0)
    send(session, "/indie/generate", "tune", 0.5)
    replies.wait("/indie/done")
    notes = fake_engine.calls[-1]["melody"]
    assert [n.pitch for n in notes] == [67] and notes[0].onset == 0.0
    send(session, "/indie/melody/clear")
    send(session, "/indie/generate", "tune", 0.5, 1, "x2")
    replies.wait("/indie/done", lambda a: a[0] == "x2")
    assert fake_engine.calls[-1]["melody"] == []


def test_bad_values_and_engine_refusals_are_errors(session, replies, fake_engine):
    send(session, "/indie/set", "temperature", -1.0)
    assert replies.wait("/indie/error")[1] == "bad_value"
    send(session, "/indie/set", "volume", 1.0)
    assert "unknown setting" in replies.wait("/indie/error", lambda a: "volume" in a[2])[2]
    send(session, "/indie/generate", "p", 100.0, 1, "toolong")
    assert replies.wait("/indie/error", lambda a: a[0] == "toolong")[1] == "out_of_range"
    send(session, "/indie/set", "pattern", "spiral")
    send(session, "/indie/generate", "p", 0.1, 1, "pat")
    error = replies.wait("/indie/error", lambda a: a[0] == "pat")
    assert error[1] == "bad_request" and "spiral" in error[2]


def test_an_engine_crash_fails_the_job_not_the_worker(session, replies, fake_engine):
    original = fake_engine.stream

    def broken(prompt, **kwargs):
        raise RuntimeError("out of memory")

    fake_engine.stream = broken
    send(session, "/indie/generate", "p", 0.1, 1, "crash")
    error = replies.wait("/indie/error")
    assert error[:2] == ("crash", "engine_failed") and "out of memory" in error[2]
    fake_engine.stream = original
    send(session, "/indie/generate", "p", 0.1, 1, "ok")
    replies.wait("/indie/done", lambda a: a[0] == "ok")


def test_status_ping_and_reply_target(session, replies):
    send(session, "/indie/ping")
    assert replies.wait("/indie/pong")[1] == 0
    send(session, "/indie/status")
    state = replies.wait("/indie/state")
    values = dict(zip(state[::2], state[1::2], strict=True))
    assert values["busy"] == 0 and values["temperature"] == 1.0 and values["live"] == 0
    send(session, "/indie/reply", "8.8.8.8", 9000)
    assert replies.wait("/indie/error")[1] == "refused"
    send(session, "/indie/reply", "127.0.0.1", 9100)
    send(session, "/indie/ping")
    assert replies.items[-1][0] == ("127.0.0.1", 9100)


def test_live_needs_a_sound_card(session, replies):
    send(session, "/indie/live", 1)
    assert replies.wait("/indie/error")[1] == "no_audio"


def test_transport_stop_cancels_without_audio(session, replies, fake_engine):
    fake_engine.step_seconds = 0.02
    send(session, "/indie/generate", "p", 10.0, 1, "t1")
    replies.wait("/indie/started")
    session.handle(c.Transport(False), None)
    assert replies.wait("/indie/cancelled")[0] == "t1"


def test_bars_without_any_tempo_and_an_empty_prompt_are_errors(session, replies):
    send(session, "/indie/set", "bars", 4)
    send(session, "/indie/generate", "p", 0, -1, "nt")
    assert replies.wait("/indie/error")[:2] == ("nt", "no_tempo")
    send(session, "/indie/generate", " ", 1.0, -1, "empty")
    assert replies.wait("/indie/error", lambda a: a[0] == "empty")[1] == "bad_arguments"
