"""The per-sender rate limit: token buckets (fake clock), the router's use of them, and real UDP
with one client flooding while another pings."""

import socket
import subprocess
import sys
import time

import pytest

from bridge.app import Bridge, BridgeOptions
from bridge.bench_fuzz import ReplyCounter, osc_bundle, osc_message
from bridge.osc.server import OscRouter
from bridge.rate_limit import RateLimit, RateLimiter
from tests.bridge.test_fuzz_osc import RecordingSession

A, B = ("127.0.0.1", 40001), ("127.0.0.1", 40002)
PING = osc_message("/indie/ping", [])


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_then_the_rate_per_sender():
    clock = Clock()
    limiter = RateLimiter(RateLimit(rate=100, burst=10), clock)
    assert [limiter.take(A) for _ in range(12)] == [True] * 10 + [False] * 2
    assert limiter.take(B)  # another sender has its own bucket
    clock.now += 0.05  # 5 tokens
    assert sum(limiter.take(A) for _ in range(10)) == 5
    clock.now += 60  # refills to the burst, no more
    assert sum(limiter.take(A) for _ in range(100)) == 10
    assert limiter.dropped == 2 + 5 + 90


def test_the_notice_comes_at_most_once_per_interval():
    clock = Clock()
    limiter = RateLimiter(RateLimit(rate=1, burst=1, notice_seconds=1.0), clock)
    limiter.take(A)
    assert [limiter.notice_due(A) for _ in range(3)] == [True, False, False]
    clock.now += 0.99
    assert not limiter.notice_due(A)
    clock.now += 0.02
    assert limiter.notice_due(A)


def test_memory_is_bounded_however_many_senders():
    limiter = RateLimiter(RateLimit(max_senders=64), Clock())
    for port in range(10_000):
        limiter.take(("127.0.0.1", port))
    assert len(limiter) == 64


def test_per_second_config():
    assert RateLimit.per_second(0) is None
    assert RateLimit.per_second(50) == RateLimit(rate=50, burst=100)
    with pytest.raises(ValueError):
        RateLimit.per_second(-1)


def test_the_router_drops_before_parsing_and_tells_the_sender_once():
    clock = Clock()
    session = RecordingSession()
    router = OscRouter(session, None, RateLimiter(RateLimit(rate=10, burst=20), clock))
    for _ in range(50):
        router.handle_datagram(PING, A)
    router.handle_datagram(b"not osc at all", A)  # dropped unparsed: no `malformed`
    router.handle_datagram(PING, B)
    assert len(session.commands) == 20 + 1
    assert [code for _, _, code in session.errors] == ["rate_limited"]
    clock.now += 1.0  # 10 more tokens, and another notice may go out
    for _ in range(15):
        router.handle_datagram(PING, A)
    assert len(session.commands) == 21 + 10
    assert [code for _, _, code in session.errors] == ["rate_limited"] * 2


def test_each_message_of_a_bundle_costs_a_token():
    session = RecordingSession()
    router = OscRouter(session, None, RateLimiter(RateLimit(rate=1, burst=5), Clock()))
    router.handle_datagram(osc_bundle([PING] * 8), A)
    assert len(session.commands) == 5
    assert [code for _, _, code in session.errors] == ["rate_limited"]


# -- real UDP ---------------------------------------------------------------------------------

FLOODER = """
import socket, sys, time
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind(("127.0.0.1", 0))
print(sock.getsockname()[1], flush=True)
data, target = bytes.fromhex(sys.argv[2]), ("127.0.0.1", int(sys.argv[1]))
end, sent = time.monotonic() + float(sys.argv[3]), 0
while time.monotonic() < end:
    for _ in range(100):
        sock.sendto(data, target)
    sent += 100
print(sent, flush=True)
"""
FLOOD_SECONDS = 2.5
PING_BOUND = 1.0  # seconds from B's first ping to its pong, retrying every RETRY


def ping_until_answered(sock, port, replies: ReplyCounter, retry: float = 0.02) -> float:
    """Seconds until /indie/pong, pinging again every `retry` s: UDP drops datagrams when the
    flood fills the server's receive buffer, whoever sent them."""
    with replies.changed:
        before = replies.pongs
    start = time.perf_counter()
    while time.perf_counter() - start < 5.0:
        sock.sendto(PING, ("127.0.0.1", port))
        with replies.changed:
            if replies.changed.wait_for(lambda: replies.pongs > before, retry):
                return time.perf_counter() - start
    return float("inf")


def test_a_flooding_client_does_not_starve_another(fake_engine, folders):
    """A sends /indie/status (a state reply each) as fast as one process can (~10^5/s); B's
    pings are answered within PING_BOUND throughout, A's messages beyond the limit are dropped
    and A hears `rate_limited` about once a second. Without the limit B's pings go unanswered
    for seconds (the server spends itself on A's queue)."""
    replies = ReplyCounter()
    options = BridgeOptions(port=0, reply_port=replies.port, out_dir=folders.out,
                            in_dir=folders.inputs, presets_dir=folders.presets, audio=False)
    limit = RateLimit()
    try:
        with Bridge(fake_engine, options) as bridge:
            assert bridge.server.router.limiter.limit == limit  # on by default
            flooder = subprocess.Popen(
                [sys.executable, "-c", FLOODER, str(bridge.port),
                 osc_message("/indie/status", []).hex(), str(FLOOD_SECONDS)],
                stdout=subprocess.PIPE, text=True)
            a_port = int(flooder.stdout.readline())
            time.sleep(0.3)  # the flood is on, A's burst spent
            client_b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            client_b.bind(("127.0.0.1", 0))
            started = time.monotonic()
            latencies = []
            while time.monotonic() - started < FLOOD_SECONDS - 0.8:
                latencies.append(ping_until_answered(client_b, bridge.port, replies))
                time.sleep(0.05)
            sent = int(flooder.stdout.readline())
            flooder.wait(5)
            client_b.close()
            dropped = bridge.server.router.limiter.dropped
    finally:
        replies.close()
    print(f"A sent {sent} in {FLOOD_SECONDS} s; B's pings: {len(latencies)}, median "
          f"{sorted(latencies)[len(latencies) // 2] * 1000:.1f} ms, max "
          f"{max(latencies) * 1000:.1f} ms")
    assert len(latencies) >= 5 and max(latencies) < PING_BOUND
    states = replies.others["/indie/state"]
    assert states <= limit.burst + limit.rate * (FLOOD_SECONDS + 1)  # A's share, no more
    assert dropped > sent / 10  # the flood was over the limit (the rest the kernel dropped)
    assert 1 <= replies.codes["rate_limited"] <= FLOOD_SECONDS + 1
    assert all(f":{a_port};" in text for text in replies.texts["rate_limited"])
