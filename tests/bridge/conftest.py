"""Bridge fixtures: the fake engine, a reply recorder, a bridge on loopback, a JACK server."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

from bridge.session import Folders, Session
from tests.bridge.fake_engine import FakeEngine

ROOT = Path(__file__).resolve().parents[2]


class Replies:
    """Collects (target, address, args) replies; waits for one to arrive."""

    def __init__(self) -> None:
        self.items: list[tuple[tuple, str, tuple]] = []
        self._cond = threading.Condition()

    def __call__(self, target, address, *args) -> None:
        with self._cond:
            self.items.append((target, address, args))
            self._cond.notify_all()

    def add(self, address: str, args: tuple, target=None) -> None:
        self(target, address, *args)

    def of(self, address: str) -> list[tuple]:
        with self._cond:
            return [args for _, a, args in self.items if a == address]

    def wait(self, address: str, match=lambda args: True, timeout: float = 5.0) -> tuple:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for _, a, args in self.items:
                    if a == address and match(args):
                        return args
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no {address} within {timeout} s; got "
                                         f"{[(a, args) for _, a, args in self.items][-8:]}")
                self._cond.wait(left)


@pytest.fixture
def replies() -> Replies:
    return Replies()


@pytest.fixture
def fake_engine() -> FakeEngine:
    return FakeEngine()


@pytest.fixture
def folders(tmp_path) -> Folders:
    presets = tmp_path / "presets"
    shutil.copytree(ROOT / "presets", presets)
    inputs = tmp_path / "in"
    inputs.mkdir()
    return Folders(tmp_path / "out", inputs, presets)


@pytest.fixture
def session(fake_engine, folders, replies):
    session = Session(fake_engine, folders, replies, reply_port=9001, queue_size=2)
    session.start()
    yield session
    session.close()


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def jack_server():
    """A JACK server with the dummy backend (48 kHz, 256-frame periods), named for this test.

    Yields the server name; JACK_DEFAULT_SERVER points clients (PortAudio, JACK-Client) at it.
    """
    if shutil.which("jackd") is None:
        pytest.skip("jackd is not installed")
    from bridge.jack_probe import JackServer

    with JackServer(48000, 256) as server:
        yield server.name


@pytest.fixture
def jack_bridge(jack_server, fake_engine, folders, replies):
    """A bridge playing through sounddevice's JACK host API, and a JACK recorder on its port.

    Replies go to the `replies` recorder instead of UDP.
    """
    import sounddevice as sd

    from bridge.app import Bridge, BridgeOptions
    from bridge.jack_probe import JackRecorder

    names = [api["name"] for api in sd.query_hostapis()]
    assert any("JACK" in name for name in names), names
    options = BridgeOptions(port=0, reply_port=9, out_dir=folders.out, audio=True,
                            audio_device="system", presets_dir=folders.presets)
    bridge = Bridge(fake_engine, options)
    bridge.session._send = bridge.session.worker.reply = replies
    recorder = JackRecorder("PortAudio:out_0", seconds=8.0, server=jack_server)
    yield bridge, recorder
    recorder.close()
    bridge.close()

