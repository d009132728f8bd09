"""The OSC address table: every address parses, and every kind of bad message is a CommandError."""

import pytest

from bridge.osc import commands as c
from bridge.osc.addresses import ADDRESSES, MAX_STRING, parse_message

# One well-formed message per address, and the command it must become.
GOOD = [
    ("/indie/ping", [], c.Ping()),
    ("/indie/generate", ["warm strings"], c.Generate("warm strings")),
    ("/indie/generate", ["warm strings", 4.0, 7], c.Generate("warm strings", 4.0, 7)),
    ("/indie/generate", ["warm", "strings", 4, 7.0, "take-1"],
     c.Generate("warm strings", 4.0, 7, "take-1")),  # Pd: words as symbols, numbers as floats
    ("/indie/generate", ["warm strings", 4, "take.2"], c.Generate("warm strings", 4.0, -1,
                                                                   "take.2")),
    ("/indie/continue", ["bounce.wav", 6.0], c.Continue("bounce.wav", 6.0)),
    ("/indie/set", ["temperature", 0.8], c.Set("temperature", 0.8)),
    ("/indie/set", ["output", "file"], c.Set("output", "file")),
    ("/indie/tempo", [96.5], c.Tempo(96.5)),
    ("/indie/melody/note", [60.0, 100.0], c.MelodyNote(60, 100)),
    ("/indie/melody/clear", [], c.MelodyClear()),
    ("/indie/preset", ["solo-piano"], c.LoadPreset("solo-piano")),
    ("/indie/render", ["solo-piano", "r1"], c.Render("solo-piano", "r1")),
    ("/indie/live", [1], c.Live(True)),
    ("/indie/live", [0.0], c.Live(False)),
    ("/indie/live", [True], c.Live(True)),
    ("/indie/cancel", [], c.Cancel("")),
    ("/indie/cancel", ["take-1"], c.Cancel("take-1")),
    ("/indie/cancel", [3], c.Cancel("3")),
    ("/indie/status", [], c.Status()),
    ("/indie/reply", ["127.0.0.1", 9100], c.ReplyTo("127.0.0.1", 9100)),
]


@pytest.mark.parametrize(("address", "args", "command"), GOOD)
def test_good_messages_become_commands(address, args, command):
    assert parse_message(address, args) == command


def test_every_address_has_a_good_example():
    assert {address for address, _, _ in GOOD} == set(ADDRESSES)


BAD = [
    ("/indie/nope", [], "unknown_address"),
    ("/indie", [], "unknown_address"),
    ("/indie/generate", [], "bad_arguments"),
    ("/indie/generate", [3.0], "bad_arguments"),
    ("/indie/generate", ["p", "x" * (MAX_STRING + 1)], "bad_arguments"),
    ("/indie/generate", ["x" * 501], "bad_arguments"),
    ("/indie/generate", ["p", -1.0], "out_of_range"),
    ("/indie/generate", ["p", 4.0, 1.5], "bad_arguments"),
    ("/indie/generate", ["p", 4.0, 1, "bad id!"], "bad_arguments"),
    ("/indie/generate", ["p", 4.0, 1, "id", 5], "bad_arguments"),
    ("/indie/generate", ["p", float("nan")], "bad_arguments"),
    ("/indie/set", ["temperature"], "bad_arguments"),
    ("/indie/set", ["../../etc", 1], "bad_arguments"),
    ("/indie/tempo", ["fast"], "bad_arguments"),
    ("/indie/tempo", [1000.0], "out_of_range"),
    ("/indie/melody/note", [128, 100], "out_of_range"),
    ("/indie/melody/note", [60], "bad_arguments"),
    ("/indie/melody/note", [60.5, 100], "bad_arguments"),
    ("/indie/preset", ["../secrets"], "bad_arguments"),
    ("/indie/preset", ["/etc/passwd"], "bad_arguments"),
    ("/indie/render", ["a/b"], "bad_arguments"),
    ("/indie/live", [2], "bad_arguments"),
    ("/indie/live", ["yes"], "bad_arguments"),
    ("/indie/cancel", [b"\x00\x01"], "bad_arguments"),
    ("/indie/reply", ["127.0.0.1", 70000], "out_of_range"),
    ("/indie/ping", [1], "bad_arguments"),
]


@pytest.mark.parametrize(("address", "args", "code"), BAD)
def test_bad_messages_are_command_errors(address, args, code):
    with pytest.raises(c.CommandError) as error:
        parse_message(address, args)
    assert error.value.code == code
    assert len(error.value.message) < 400  # a huge argument is never echoed whole


def test_an_error_names_the_job_the_message_named():
    with pytest.raises(c.CommandError) as error:
        parse_message("/indie/generate", ["p", -5.0, 1, "take-9"])
    assert error.value.job_id == "take-9"
