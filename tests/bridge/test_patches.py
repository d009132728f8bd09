"""The patches: the Max patch's OSC addresses exist; headless Pure Data drives a generation."""

import json
import re
import shutil
import subprocess
import time

import pytest

from bridge.app import Bridge, BridgeOptions
from bridge.osc.addresses import ADDRESSES, REPLIES
from tests.bridge.conftest import ROOT, free_udp_port

PATCHES = ROOT / "max_patches"
PD = shutil.which("pd")


def max_boxes(patch: dict):
    """Every box of a Max patcher, subpatchers included."""
    for entry in patch["patcher"]["boxes"]:
        box = entry["box"]
        yield box
        if "patcher" in box:
            yield from max_boxes(box)


def test_the_max_patch_parses_and_sends_only_known_addresses():
    patch = json.loads((PATCHES / "indie.maxpat").read_text())
    boxes = list(max_boxes(patch))
    classes = {box["maxclass"] for box in boxes}
    assert {"textedit", "dial", "message", "newobj"} <= classes
    texts = [box.get("text", "") for box in boxes]
    assert any(t.startswith("udpsend 127.0.0.1 9000") for t in texts)
    assert any(t.startswith("udpreceive 9001") for t in texts)
    assert any(t.startswith("notein") for t in texts)
    sent, routed = set(), set()
    for text in texts:
        addresses = re.findall(r"/indie(?:/[a-z]+)+", text)
        (routed if text.startswith("route") else sent).update(addresses)
    assert {"/indie/generate", "/indie/cancel", "/indie/melody/note", "/indie/set"} <= sent
    assert sent <= set(ADDRESSES), sent - set(ADDRESSES)
    assert {"/indie/progress", "/indie/done"} <= routed and routed <= set(REPLIES)
    ids = {box["id"] for box in boxes}
    for line in patch["patcher"]["lines"]:
        assert line["patchline"]["source"][0] in ids and line["patchline"]["destination"][0] in ids


def run_pd(patch, timeout=20):
    return subprocess.run([PD, "-nogui", "-nosound", "-nomidi", "-stderr", "-path", str(PATCHES),
                           "-open", str(patch)], capture_output=True, text=True, timeout=timeout)


@pytest.mark.skipif(PD is None, reason="Pure Data is not installed")
def test_the_pd_patch_loads_without_errors(tmp_path):
    wrapper = tmp_path / "open.pd"
    wrapper.write_text("#N canvas 0 0 450 300 12;\n#X obj 10 10 loadbang;\n"
                       "#X obj 10 40 delay 200;\n#X msg 10 70 \\; pd quit;\n"
                       f"#X obj 10 100 {(PATCHES / 'indie').as_posix()};\n"
                       "#X connect 0 0 1 0;\n#X connect 1 0 2 0;\n")
    result = run_pd(wrapper)
    assert "couldn't create" not in result.stderr and "error" not in result.stderr.lower(), \
        result.stderr


@pytest.mark.skipif(PD is None, reason="Pure Data is not installed")
def test_headless_pd_generates_and_receives_done(fake_engine, folders, tmp_path):
    reply_port = free_udp_port()
    options = BridgeOptions(port=0, reply_port=reply_port, out_dir=folders.out, audio=False,
                            presets_dir=folders.presets)
    with Bridge(fake_engine, options) as bridge:
        wrapper = tmp_path / "roundtrip.pd"
        wrapper.write_text(f"""#N canvas 0 0 450 300 12;
#X obj 10 10 loadbang;
#X obj 10 40 delay 300;
#X msg 10 70 tempo 120;
#X obj 10 130 indie-osc {bridge.port} {reply_port};
#X obj 10 160 route done error ack;
#X obj 10 190 print INDIE-DONE;
#X obj 150 190 print INDIE-ERROR;
#X msg 10 250 \\; pd quit;
#X obj 200 10 delay 15000;
#X msg 10 100 generate pd round trip 0.25 7 pd1;
#X obj 10 220 delay 100;
#X obj 250 190 print INDIE-ACK;
#X obj 100 220 t b;
#X connect 0 0 1 0;
#X connect 1 0 2 0;
#X connect 1 0 9 0;
#X connect 2 0 3 0;
#X connect 9 0 3 0;
#X connect 3 0 4 0;
#X connect 4 0 5 0;
#X connect 4 1 6 0;
#X connect 4 2 11 0;
#X connect 4 0 12 0;
#X connect 12 0 10 0;
#X connect 10 0 7 0;
#X connect 0 0 8 0;
#X connect 8 0 7 0;
""")
        started = time.monotonic()
        result = run_pd(wrapper)
        elapsed = time.monotonic() - started
    done = re.search(r"INDIE-DONE: pd1 (\S+) 0.25", result.stderr)
    assert done, result.stderr
    assert done.group(1).startswith(str(folders.out.resolve()))
    assert "INDIE-ACK: /indie/tempo 120" in result.stderr
    assert fake_engine.calls[-1]["prompt"] == "pd round trip"  # Pd's words, joined
    assert fake_engine.calls[-1]["bpm"] == 120.0
    assert elapsed < 10  # it quit on /indie/done, not on its 15 s timeout
