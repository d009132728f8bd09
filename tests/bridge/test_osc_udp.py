"""The OSC server over real UDP on loopback: python-osc clients, liblo's oscsend and oscdump."""

import shutil
import socket
import subprocess
import time

import pytest
import soundfile as sf
from pythonosc.osc_message_builder import OscMessageBuilder
from pythonosc.osc_server import BlockingOSCUDPServer
from pythonosc.udp_client import SimpleUDPClient

from bridge.app import Bridge, BridgeOptions
from tests.bridge.conftest import Replies, free_udp_port


class OscListener:
    """A python-osc UDP server on a free loopback port that records every message."""

    def __init__(self) -> None:
        from pythonosc.dispatcher import Dispatcher

        self.replies = Replies()
        dispatcher = Dispatcher()
        dispatcher.set_default_handler(lambda address, *args: self.replies.add(address, args))
        self.server = BlockingOSCUDPServer(("127.0.0.1", 0), dispatcher)
        self.port = self.server.server_address[1]
        import threading

        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,),
                                       daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def listener():
    listener = OscListener()
    yield listener
    listener.close()


@pytest.fixture
def bridge(fake_engine, folders, listener):
    options = BridgeOptions(port=0, reply_port=listener.port, out_dir=folders.out,
                            in_dir=folders.inputs, presets_dir=folders.presets, audio=False,
                            queue_size=2)
    with Bridge(fake_engine, options) as bridge:
        yield bridge


def test_generate_over_udp(bridge, listener, folders):
    client = SimpleUDPClient("127.0.0.1", bridge.port)
    client.send_message("/indie/ping", [])
    assert listener.replies.wait("/indie/pong")[0] == "0.1.0"
    client.send_message("/indie/generate", ["bright brass fanfare", 0.5, 3, "u1"])
    job, path, seconds = listener.replies.wait("/indie/done")
    assert job == "u1" and seconds == 0.5 and len(sf.read(path)[0]) == 16000
    assert listener.replies.of("/indie/started") == [("u1",)]


def test_bad_datagrams_get_errors_and_the_server_survives(bridge, listener):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    # Replies go to the sender's host at the reply port (the listener), whatever the source port.
    for garbage in (b"hello", b"\x00" * 12, b"/indie/generate\x00,s\x00\x00"):
        sock.sendto(garbage, ("127.0.0.1", bridge.port))
    huge = OscMessageBuilder("/indie/generate")
    huge.add_arg("x" * 60000)
    sock.sendto(huge.build().dgram, ("127.0.0.1", bridge.port))
    client = SimpleUDPClient("127.0.0.1", bridge.port)
    client.send_message("/indie/unknown", [1])
    client.send_message("/indie/tempo", ["fast"])
    client.send_message("/indie/preset", ["../../etc/passwd"])
    client.send_message("/indie/ping", [])
    listener.replies.wait("/indie/pong")
    codes = [args[1] for args in listener.replies.of("/indie/error")]
    assert codes.count("malformed") == 3
    assert {"unknown_address", "bad_arguments"} <= set(codes)
    assert len(codes) == 7
    sock.close()


def test_cancel_over_udp_acknowledged_quickly(bridge, listener, fake_engine):
    fake_engine.step_seconds = 0.02
    client = SimpleUDPClient("127.0.0.1", bridge.port)
    client.send_message("/indie/generate", ["slow", 20.0, 1, "c1"])
    listener.replies.wait("/indie/progress")
    sent = time.monotonic()
    client.send_message("/indie/cancel", ["c1"])
    listener.replies.wait("/indie/cancelled")
    assert time.monotonic() - sent < 0.1


def test_the_server_binds_loopback_by_default(bridge):
    assert bridge.server.host == "127.0.0.1"


@pytest.mark.skipif(shutil.which("oscsend") is None, reason="liblo-tools not installed")
def test_liblo_oscsend_and_oscdump(fake_engine, folders):
    port = free_udp_port()
    dump = subprocess.Popen(["oscdump", "-L", str(port)], stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(0.3)  # oscdump binds
        options = BridgeOptions(port=0, reply_port=port, out_dir=folders.out, audio=False,
                                presets_dir=folders.presets)
        with Bridge(fake_engine, options) as bridge:
            url = f"osc.udp://127.0.0.1:{bridge.port}/"
            subprocess.run(["oscsend", url, "/indie/tempo", "f", "100"], check=True)
            subprocess.run(["oscsend", url, "/indie/generate", "sfis", "liblo test", "0.25",
                            "9", "lo1"], check=True)
            subprocess.run(["oscsend", url, "/indie/bogus", "i", "1"], check=True)
            deadline = time.monotonic() + 5
            lines = []
            while time.monotonic() < deadline and not any("/indie/done" in x for x in lines):
                lines.append(dump.stdout.readline())
        text = "".join(lines)
        assert '/indie/done ssf "lo1"' in text and "0.25" in text
        assert '/indie/ack sf "/indie/tempo" 100' in text
    finally:
        dump.terminate()
        dump.wait(5)
    dump_rest = dump.stdout.read()
    assert "unknown_address" in text + dump_rest
