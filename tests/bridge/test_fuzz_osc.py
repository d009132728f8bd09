"""Property tests of the OSC router, no sockets: whatever bytes arrive, handle_datagram returns,
and every message the address table refuses is answered with exactly one /indie/error to the
sender (a datagram that is not OSC at all: one `malformed`)."""

import math
import struct
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.bench_fuzz import Generator, osc_bundle, osc_message, owed_errors
from bridge.osc.addresses import ADDRESSES, parse_message
from bridge.osc.commands import CommandError
from bridge.osc.packets import BUNDLE, MAX_ARRAY_DEPTH, MAX_BUNDLE_DEPTH, Malformed, Message, decode
from bridge.osc.server import OscRouter

SENDER = ("127.0.0.1", 50123)
REPLY_TO = ("127.0.0.1", 9001)
FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


class RecordingSession:
    """The three Session methods the router uses, recording instead of acting."""

    def __init__(self) -> None:
        self.errors: list[tuple[tuple, str, str]] = []  # (target, job id, code)
        self.commands: list = []

    def target(self, sender):
        return (sender[0], 9001)

    def error(self, to, job_id, code, message) -> None:
        assert isinstance(message, str) and len(message) <= 200
        self.errors.append((to, job_id, code))

    def handle(self, command, sender) -> None:
        self.commands.append(command)


def route(data: bytes) -> RecordingSession:
    session = RecordingSession()
    OscRouter(session, reply=None).handle_datagram(data, SENDER)
    return session


def outcomes(messages: list[Message]) -> tuple[list, list[str]]:
    """What the address table makes of each message: the commands and the error codes."""
    commands, codes = [], []
    for message in messages:
        try:
            commands.append(parse_message(message.address, message.args))
        except CommandError as error:
            codes.append(error.code)
    return commands, codes


def assert_answered(data: bytes, session: RecordingSession) -> None:
    assert all(to == REPLY_TO for to, _, _ in session.errors)
    try:
        messages = decode(data)
    except Malformed:
        assert [code for _, _, code in session.errors] == ["malformed"]
        assert session.commands == []
        return
    commands, codes = outcomes(messages)
    assert session.commands == commands
    assert [code for _, _, code in session.errors] == codes


# -- arbitrary bytes ------------------------------------------------------------------------

OSC_LIKE = st.one_of(
    st.binary(max_size=2048),
    st.binary(max_size=512).map(lambda b: b"/" + b),
    st.binary(max_size=512).map(lambda b: b"/indie/ping\x00" + b),
    st.binary(max_size=512).map(lambda b: BUNDLE + b),
)


@FAST
@given(OSC_LIKE)
def test_arbitrary_bytes_never_raise_and_are_answered(data):
    assert_answered(data, route(data))


# -- arbitrary well-formed messages and bundles ----------------------------------------------

TEXT = st.text(max_size=40).filter(lambda t: "\x00" not in t)
ARG = st.one_of(
    st.tuples(st.just("i"), st.integers(-2**31, 2**31 - 1)),
    st.tuples(st.just("h"), st.integers(-2**63, 2**63 - 1)),
    st.tuples(st.just("f"), st.floats(width=32)),  # NaN and ±inf included
    st.tuples(st.just("d"), st.floats()),
    st.tuples(st.just("s"), TEXT),
    st.tuples(st.just("b"), st.binary(max_size=40)),
    st.tuples(st.sampled_from("TFN"), st.none()),
)
ADDRESS = st.one_of(st.sampled_from(sorted(ADDRESSES)), TEXT.map(lambda t: "/" + t))
MESSAGE = st.tuples(ADDRESS, st.lists(ARG, max_size=6))
# Arbitrary nesting, kept within MAX_BUNDLE_DEPTH by the strategy's own depth.
PACKET = st.recursive(MESSAGE.map(lambda m: osc_message(*m)),
                      lambda inner: st.lists(inner, max_size=5).map(osc_bundle), max_leaves=12)


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return struct.pack(">d", a) == struct.pack(">d", b)
    return a == b


@FAST
@given(MESSAGE)
def test_well_formed_messages_decode_exactly(message):
    address, args = message
    (decoded,) = decode(osc_message(address, args))
    assert decoded.address == address
    values = [value for tag, value in args]
    values = [struct.unpack(">f", struct.pack(">f", v))[0] if tag == "f" else v
              for (tag, _), v in zip(args, values, strict=True)]
    values = [{"T": True, "F": False}.get(tag, v) for (tag, _), v in zip(args, values,
                                                                          strict=True)]
    assert len(decoded.args) == len(values)
    assert all(_same(a, b) for a, b in zip(decoded.args, values, strict=True))


@FAST
@given(PACKET)
def test_every_refused_message_gets_exactly_one_error(data):
    assert_answered(data, route(data))


def test_refusals_are_answered_one_each_in_a_bundle():
    bad = [osc_message("/indie/nope", []), osc_message("/indie/tempo", [("s", "fast")]),
           osc_message("/indie/melody/note", [("i", 128), ("i", 1)])]
    good = osc_message("/indie/tempo", [("f", 120.0)])
    session = route(osc_bundle([bad[0], good, osc_bundle([bad[1], bad[2]])]))
    assert [code for _, _, code in session.errors] == ["unknown_address", "bad_arguments",
                                                       "out_of_range"]
    assert len(session.commands) == 1


# -- what python-osc let through or choked on ------------------------------------------------

def test_an_unknown_type_tag_is_malformed_not_skipped():
    # python-osc skipped the 'x' and the message passed as a ping.
    session = route(osc_message("/indie/ping", [], tags=",x"))
    assert [code for _, _, code in session.errors] == ["malformed"] and not session.commands


@pytest.mark.parametrize("lie", [0, -4, -2**31, 2**31 - 1, 3, 28, 32])
def test_a_bundle_whose_sizes_lie_runs_nothing(lie):
    good = osc_message("/indie/tempo", [("f", 120.0)])  # 24 bytes
    data = bytearray(osc_bundle([good, good]))
    struct.pack_into(">i", data, len(BUNDLE) + 8 + 4 + len(good), lie)  # the second size
    session = route(bytes(data))
    assert [code for _, _, code in session.errors] == ["malformed"] and not session.commands


def test_a_negative_blob_size_is_malformed():
    data = osc_message("/indie/tempo", [], tags=",b") + struct.pack(">i", -8)
    assert [code for _, _, code in route(data).errors] == ["malformed"]


@pytest.mark.parametrize("special", [math.nan, math.inf, -math.inf])
def test_nan_and_infinity_are_refused(special):
    for address, args in (("/indie/tempo", [("f", special)]),
                          ("/indie/generate", [("s", "x"), ("d", special)]),
                          ("/indie/melody/note", [("f", special), ("i", 1)]),
                          ("/indie/live", [("f", special)])):
        session = route(osc_message(address, args))
        assert [code for _, _, code in session.errors] == ["bad_arguments"], address


# -- depth ------------------------------------------------------------------------------------

def nest(inner: bytes, depth: int) -> bytes:
    for _ in range(depth):
        inner = osc_bundle([inner])
    return inner


def test_bundles_as_deep_as_a_datagram_allows_are_refused_quickly():
    inner = osc_message("/indie/tempo", [("s", "fast")])
    deepest = (65507 - len(inner)) // (len(BUNDLE) + 8 + 4)
    data = nest(inner, deepest)
    assert len(data) <= 65507 and deepest > 3000
    start = time.perf_counter()
    session = route(data)
    assert time.perf_counter() - start < 0.5
    assert [code for _, _, code in session.errors] == ["malformed"]


def test_nesting_up_to_the_limit_is_fine_one_more_is_not():
    inner = osc_message("/indie/tempo", [("s", "fast")])
    assert [c for _, _, c in route(nest(inner, MAX_BUNDLE_DEPTH)).errors] == ["bad_arguments"]
    assert [c for _, _, c in route(nest(inner, MAX_BUNDLE_DEPTH + 1)).errors] == ["malformed"]


@pytest.mark.parametrize(("depth", "code"), [(MAX_ARRAY_DEPTH, "bad_arguments"),
                                             (MAX_ARRAY_DEPTH + 1, "malformed"),
                                             (30000, "malformed")])
def test_deeply_nested_arrays(depth, code):
    data = osc_message("/indie/tempo", [], tags="," + "[" * depth + "]" * depth)
    assert [c for _, _, c in route(data).errors] == [code]


def test_the_bench_generator_only_makes_refused_datagrams_of_every_category():
    generator = Generator(seed=1)
    for name, make in generator.categories.items():
        for _ in range(30):
            data = make()
            codes = owed_errors(data)
            if codes is None:
                continue  # the bench draws again
            session = route(data)
            assert [code for _, _, code in session.errors] == codes, name
            assert not session.commands, name


# -- the bench, small, against a real `indie serve` (tiny weights) -------------------------------

def test_bench_fuzz_against_a_real_server(tmp_path):
    from bridge.bench_fuzz import FuzzConfig, bench_fuzz
    from tests.tiny_engine import export_tiny_weights

    codec, lm = export_tiny_weights(tmp_path / "weights")
    result = bench_fuzz(FuzzConfig(packets=260, seed=3, samples=2,
                                   serve_args=("--codec", str(codec), "--lm", str(lm))))
    assert sum(c["packets"] for c in result["categories"].values()) == 260
    assert all(c["packets"] == 20 for c in result["categories"].values())
    assert not result["crashed"] and result["answered_ping_after"]
    assert result["exit_code_after_sigterm"] == 130 and result["server_log_tracebacks"] == 0
    assert result["errors_received"] == result["errors_owed"] > 260
    assert result["error_codes_received"] == result["error_codes_owed"]
    assert result["other_replies"] == {} and result["reply_timeouts_errors_missing"] == 0
    assert result["after"]["threads"] == result["before"]["threads"]
