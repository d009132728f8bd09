"""Security over OSC: no message reads or writes outside the configured folders, and
`indie serve` listens on loopback unless told otherwise."""

import json
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from bridge.bench_fuzz import osc_message, osc_string
from bridge.cli import build_parser
from bridge.osc import commands as c
from bridge.osc.server import OscRouter
from tests.bridge.conftest import ROOT
from tests.tiny_engine import export_tiny_weights

SENDER = ("127.0.0.1", 55555)


def send(session, address, *args):
    """One datagram through the real router: decoder, address table, session."""
    tags = {str: "s", float: "f", int: "i"}
    data = osc_message(address, [(tags[type(a)], a) for a in args])
    OscRouter(session, None).handle_datagram(data, SENDER)


def error_code(replies, clear=True) -> str:
    code = replies.wait("/indie/error")[1]
    if clear:
        replies.items.clear()
    return code


@pytest.fixture
def outside(tmp_path):
    """A folder beside the allowed ones, holding a clip, a preset and a MIDI file."""
    outside = tmp_path / "outside"
    outside.mkdir()
    sf.write(outside / "secret.wav", np.zeros(640), 32000)
    (outside / "evil.yaml").write_text("prompt: stolen\nseconds: 1\n")
    (outside / "tune.mid").write_bytes((ROOT / "presets/melodies/ode-to-joy.mid").read_bytes())
    return outside


@pytest.mark.parametrize("name", [
    "../outside/secret.wav", "../../etc/passwd", "/etc/passwd", "{outside}/secret.wav",
    "~/secret.wav", "~", "link.wav", "linked-dir/secret.wav", ".", "x" * 300,
])
def test_continue_never_reads_outside_the_input_folder(session, replies, folders, fake_engine,
                                                       outside, name):
    (folders.inputs / "link.wav").symlink_to(outside / "secret.wav")
    (folders.inputs / "linked-dir").symlink_to(outside)
    send(session, "/indie/continue", name.format(outside=outside), 1.0, 1, "c1")
    assert error_code(replies) == "path_refused"
    assert fake_engine.calls == []


def test_a_nul_byte_cannot_cut_a_name_short(session, replies, fake_engine):
    # OSC strings end at the first NUL: the rest is bytes the decoder will not accept.
    data = osc_string("/indie/continue") + osc_string(",s") + b"clip.wav\x00/../../etc/passwd\x00"
    OscRouter(session, None).handle_datagram(data, SENDER)
    assert error_code(replies) == "malformed"
    # A NUL inside a string that reached the session another way (MIDI, a library) as well.
    session.handle(c.Continue("clip.wav\x00../../etc/passwd"), SENDER)
    assert error_code(replies) == "path_refused"
    assert fake_engine.calls == []


def test_presets_load_only_from_the_presets_folder(session, replies, folders, fake_engine,
                                                   outside):
    (folders.presets / "evil.yaml").symlink_to(outside / "evil.yaml")
    for address in ("/indie/preset", "/indie/render"):
        send(session, address, "evil")  # a symlinked preset file pointing out
        assert error_code(replies) == "bad_preset"
        for name in ("../outside/evil", "..", "/etc/passwd", "a/b", "~"):  # not even a name
            send(session, address, name)
            assert error_code(replies) == "bad_arguments"
    assert session.preset is None and fake_engine.calls == []


@pytest.mark.parametrize("melody", ["../outside/tune.mid", "{outside}/tune.mid", "link.mid"])
def test_a_preset_melody_outside_the_presets_folder_is_refused(session, replies, folders,
                                                               fake_engine, outside, melody):
    (folders.presets / "link.mid").symlink_to(outside / "tune.mid")
    (folders.presets / "sneaky.yaml").write_text(
        f"prompt: x\nseconds: 1\nmelody: {melody.format(outside=outside)}\n")
    send(session, "/indie/render", "sneaky", "r1")
    assert error_code(replies) == "bad_preset"
    assert fake_engine.calls == []


def test_outputs_from_hostile_ids_and_prompts_stay_in_the_output_folder(session, replies,
                                                                         folders, tmp_path):
    prompt = "../../../tmp/pwned/" + "/..\\~$(rm -rf)" * 3
    send(session, "/indie/generate", prompt, 0.1, 1, "..")
    done = replies.wait("/indie/done")
    path = Path(done[1])
    assert path.parent == folders.out.resolve()
    assert json.loads(path.with_suffix(".json").read_text())["job"] == ".."
    written = {p for p in tmp_path.rglob("*") if p.is_file()} - {
        p for p in (tmp_path / "presets").rglob("*")}
    assert written == {path, path.with_suffix(".json")}


# -- where `indie serve` listens --------------------------------------------------------------

def test_the_serve_command_defaults_to_loopback():
    args = build_parser().parse_args(["serve"])
    assert args.host == "127.0.0.1"


def _bound_address(pid: int, port: int) -> str | None:
    """The local IPv4 address a process's UDP socket on `port` is bound to (/proc/net/udp)."""
    for line in Path(f"/proc/{pid}/net/udp").read_text().splitlines()[1:]:
        local = line.split()[1]
        address, hex_port = local.split(":")
        if int(hex_port, 16) == port:
            return socket.inet_ntoa(bytes.fromhex(address)[::-1])
    return None


@pytest.mark.skipif(not Path("/proc/net/udp").exists(), reason="needs Linux /proc")
def test_indie_serve_binds_loopback_by_default(tmp_path):
    codec, lm = export_tiny_weights(tmp_path / "weights")
    process = subprocess.Popen(
        [sys.executable, "-m", "bridge.cli", "serve", "--port", "0", "--no-audio", "--out-dir",
         str(tmp_path / "out"), "--codec", str(codec), "--lm", str(lm)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    try:
        line = process.stdout.readline()
        port = int(line.split("udp://127.0.0.1:")[1].split(",")[0])
        assert _bound_address(process.pid, port) == "127.0.0.1"
    finally:
        process.terminate()
        process.wait(10)
