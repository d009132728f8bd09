"""`indie bench fuzz`: malformed OSC at a real `indie serve`, and what the server made of it.

It starts `indie serve --no-audio` as a subprocess (the weights it loads itself), waits for
/indie/ping → /indie/pong, then sends datagrams from a seeded generator, one category after
another in turn (CATEGORIES). No datagram it sends holds a message the server would act on:
each one is checked in this process with the server's own rules (bridge.osc.packets and
bridge.osc.addresses) and drawn again if it would (so no generation starts and no setting
changes). Those rules also say which /indie/error codes the server owes for it; the replies are
counted on the reply port and compared, code by code.

UDP on loopback drops datagrams when a receive buffer is full, so the fuzzer keeps at most
`window` datagrams (and `window_bytes`) unanswered: before sending more it waits for the
replies of the oldest. A datagram whose replies do not come within `reply_timeout` is counted
in `reply_timeouts` and the count moves on, so a lost reply shows in the totals instead of
stalling the run.
"""

from __future__ import annotations

import collections
import math
import os
import queue
import random
import re
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bridge.osc.addresses import ADDRESSES, parse_message
from bridge.osc.commands import CommandError
from bridge.osc.packets import BUNDLE, MAX_BUNDLE_DEPTH, Malformed, decode
from bridge.process_status import proc_status

MAX_UDP = 65507  # the largest IPv4 UDP payload
KNOWN_TAGS = "ifdhsSbcmrtTFNI"


@dataclass(frozen=True)
class FuzzConfig:
    """A fuzz run.

    Args:
        packets: datagrams to send.
        seed: the generator's seed (same seed, same datagrams).
        window: datagrams sent but not yet answered, at most.
        window_bytes: bytes sent but not yet answered, at most (well under the server's
            receive buffer, so none is dropped by the kernel).
        reply_timeout: seconds to wait for one datagram's replies.
        startup_timeout: seconds `indie serve` may take to answer its first ping.
        rate_limit: the server's --rate-limit (0: off, so every datagram reaches the parser;
            the limit has its own test).
        serve_args: more `indie serve` arguments (tests pass tiny weights).
        samples: how many times to read the server's memory and threads during the run.
    """

    packets: int = 100_000
    seed: int = 0
    window: int = 32
    window_bytes: int = 256 * 1024
    reply_timeout: float = 2.0
    startup_timeout: float = 300.0
    rate_limit: float = 0.0
    serve_args: tuple[str, ...] = ()
    samples: int = 10


# -- encoding (deliberately able to write what a correct encoder never would) ---------------

def osc_string(text: str | bytes) -> bytes:
    data = text.encode() if isinstance(text, str) else text
    return data + b"\x00" * (4 - len(data) % 4)


def osc_blob(data: bytes) -> bytes:
    return struct.pack(">i", len(data)) + data + b"\x00" * (-len(data) % 4)


_PACK = {"i": ">i", "h": ">q", "f": ">f", "d": ">d", "t": ">Q", "r": ">I", "c": ">i"}


def osc_arg(tag: str, value: Any) -> bytes:
    if tag in _PACK:
        return struct.pack(_PACK[tag], value)
    if tag in "sS":
        return osc_string(value)
    if tag == "b":
        return osc_blob(value)
    if tag == "m":
        return bytes(value)
    return b""  # T F N I [ ] carry no bytes


def osc_message(address: str | bytes, args: list[tuple[str, Any]],
                tags: str | None = None) -> bytes:
    """A message; `tags` overrides the type tag string (to make it lie about the args)."""
    tag_string = tags if tags is not None else "," + "".join(tag for tag, _ in args)
    return (osc_string(address) + osc_string(tag_string)
            + b"".join(osc_arg(tag, value) for tag, value in args))


def osc_bundle(elements: list[bytes], timetag: int = 1) -> bytes:
    return BUNDLE + struct.pack(">Q", timetag) + b"".join(
        struct.pack(">i", len(element)) + element for element in elements)


# Well-formed messages the server would act on: the bases that get cut and mutated.
VALID: list[tuple[str, list[tuple[str, Any]]]] = [
    ("/indie/ping", []),
    ("/indie/generate", [("s", "warm strings"), ("f", 4.0), ("i", 7), ("s", "take-1")]),
    ("/indie/continue", [("s", "bounce.wav"), ("f", 6.0)]),
    ("/indie/set", [("s", "temperature"), ("f", 0.8)]),
    ("/indie/tempo", [("f", 96.5)]),
    ("/indie/melody/note", [("i", 60), ("i", 100)]),
    ("/indie/melody/clear", []),
    ("/indie/preset", [("s", "solo-piano")]),
    ("/indie/render", [("s", "solo-piano"), ("s", "r1")]),
    ("/indie/live", [("i", 1)]),
    ("/indie/cancel", [("s", "take-1")]),
    ("/indie/status", []),
    ("/indie/reply", [("s", "127.0.0.1"), ("i", 9100)]),
]
SPECIAL_FLOATS = (math.nan, math.inf, -math.inf)
EDGE_INTS = (-2**31, -2**31 + 1, -2, -1, 0, 1, 2, 127, 128, 255, 256, 400, 401, 600, 601,
             65535, 65536, 2**31 - 1)
EDGE_INT64 = (-2**63, -2**63 + 1, -2**31 - 1, 2**31, 2**32, 2**53 + 1, 2**63 - 1)


class Generator:
    """Seeded malformed datagrams, one method per category."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.categories: dict[str, Callable[[], bytes]] = {
            "random_bytes": self.random_bytes,
            "truncated": self.truncated,
            "wrong_type_tags": self.wrong_type_tags,
            "unknown_type_tags": self.unknown_type_tags,
            "huge_strings": self.huge_strings,
            "huge_blobs": self.huge_blobs,
            "deep_bundles": self.deep_bundles,
            "lying_bundles": self.lying_bundles,
            "nan_inf": self.nan_inf,
            "out_of_range_ints": self.out_of_range_ints,
            "unknown_addresses": self.unknown_addresses,
            "wrong_arity": self.wrong_arity,
            "many_message_bundles": self.many_message_bundles,
        }

    # helpers
    def _size(self, largest: int) -> int:
        """A size from 1 to `largest`, log-uniform: small ones often, the largest sometimes."""
        return max(1, min(largest, int(2 ** self.rng.uniform(0, math.log2(largest + 1)))))

    def _valid(self) -> tuple[str, list[tuple[str, Any]]]:
        return self.rng.choice(VALID)

    def _route(self) -> str:
        return self.rng.choice(list(ADDRESSES))

    def _word(self, letters: str = "abcdefghijklmnopqrstuvwxyz0123456789-_./*?") -> str:
        return "".join(self.rng.choice(letters) for _ in range(self.rng.randint(1, 16)))

    def _any_arg(self) -> tuple[str, Any]:
        rng = self.rng
        tag = rng.choice("ifdhsbTFN")
        value: Any = {"i": lambda: rng.choice(EDGE_INTS), "h": lambda: rng.choice(EDGE_INT64),
                      "f": lambda: rng.uniform(-1e6, 1e6), "d": lambda: rng.uniform(-1e9, 1e9),
                      "s": self._word, "b": lambda: rng.randbytes(rng.randint(1, 32))}.get(
                          tag, lambda: None)()
        return tag, value

    def _rejected_message(self) -> bytes:
        """A well-formed message the address table refuses (for bundles)."""
        while True:
            make = self.rng.choice((self.nan_inf, self.out_of_range_ints,
                                    self.unknown_addresses, self.wrong_arity, self._wrong_types))
            message = make()
            if owed_errors(message) not in (None, ["malformed"]):
                return message

    def _wrong_types(self) -> bytes:
        return osc_message(self._route(), [self._any_arg() for _ in range(self.rng.randint(0, 6))])

    # categories
    def random_bytes(self) -> bytes:
        return self.rng.randbytes(self._size(MAX_UDP))

    def truncated(self) -> bytes:
        address, args = self._valid()
        whole = osc_message(address, args)
        if self.rng.random() < 0.3:
            whole = osc_bundle([whole, osc_message(*self._valid())])
        return whole[:self.rng.randrange(1, len(whole))]

    def wrong_type_tags(self) -> bytes:
        if self.rng.random() < 0.5:
            return self._wrong_types()
        # Type tags that do not match the bytes that follow.
        args = [self._any_arg() for _ in range(self.rng.randint(0, 6))]
        tags = "," + "".join(self.rng.choice(KNOWN_TAGS) for _ in range(len(args) + 1))
        return osc_message(self._route(), args, tags)

    def unknown_type_tags(self) -> bytes:
        address, args = self._valid()
        tags = "," + "".join(tag for tag, _ in args)
        unknown = self.rng.choice("aegjklnopquvwxyzABCDEGHJKLMOPQRUVWXYZ0123456789!$%&()+-;<=>@"
                                  "\u00e9\u2603")
        position = self.rng.randint(0, len(tags))
        mutation = self.rng.randrange(4)
        if mutation == 0:
            tags = tags[:position] + unknown + tags[position:]
        elif mutation == 1:
            tags = tags[1:] or "i"  # no leading comma
        elif mutation == 2:
            tags = tags + self.rng.choice(("[", "]", "[[", "]]", "[" * 40, "]["))
        else:
            tags = "," + unknown * self._size(2000)
        return osc_message(address, args, tags)

    def huge_strings(self) -> bytes:
        rng = self.rng
        room = MAX_UDP - 64
        kind = rng.randrange(3)
        if kind == 0:  # one huge argument
            text = rng.choice("x\u00e9\u2603") * self._size(room // 3)  # 1, 2, 3 bytes
            return osc_message(self._route(), [("s", text)])
        if kind == 1:  # a huge address
            return osc_message("/" + "a" * self._size(room), [("i", 1)])
        words = [("s", "w" * 1000) for _ in range(rng.randint(2, room // 1008))]
        return osc_message("/indie/generate", words)  # a prompt of many long words

    def huge_blobs(self) -> bytes:
        blob = self.rng.randbytes(self._size(MAX_UDP - 64))
        address = self._route() if self.rng.random() < 0.8 else "/indie/blob"
        return osc_message(address, [("b", blob)])

    def deep_bundles(self) -> bytes:
        inner = self._rejected_message()
        deepest = (MAX_UDP - len(inner)) // (len(BUNDLE) + 8 + 4)
        depth = self.rng.choice((self.rng.randint(1, MAX_BUNDLE_DEPTH + 2), self._size(deepest)))
        depth = min(depth, deepest)
        for _ in range(depth):
            inner = osc_bundle([inner])
        return inner

    def lying_bundles(self) -> bytes:
        rng = self.rng
        if rng.random() < 0.2:  # a bundle header cut short, or junk where elements should be
            return BUNDLE + rng.randbytes(rng.choice((0, 3, 7, 9, 17, 64)))
        elements = [self._rejected_message() for _ in range(rng.randint(1, 4))]
        data = bytearray(osc_bundle(elements))
        liar = rng.randrange(len(elements))
        offset = len(BUNDLE) + 8 + sum(4 + len(element) for element in elements[:liar])
        real = len(elements[liar])
        lie = rng.choice((0, -1, -4, -2**31, 2**31 - 1, real + 1, real + 2, real + 4, real - 4,
                          real - 1, len(data), 2 * len(data)))
        struct.pack_into(">i", data, offset, lie)
        return bytes(data)

    def nan_inf(self) -> bytes:
        special = self.rng.choice(SPECIAL_FLOATS)
        tag = self.rng.choice("fd")
        address, args = self._valid()
        numbers = [i for i, (t, _) in enumerate(args) if t in "fi"]
        if not numbers:
            return osc_message(self.rng.choice(("/indie/tempo", "/indie/live",
                                                "/indie/melody/note")), [(tag, special)] * 2)
        args = list(args)
        args[self.rng.choice(numbers)] = (tag, special)
        return osc_message(address, args)

    def out_of_range_ints(self) -> bytes:
        rng = self.rng
        tag = rng.choice("ih")
        value = rng.choice(EDGE_INTS if tag == "i" else EDGE_INT64)
        choices = [
            ("/indie/melody/note", [(tag, value), ("i", 100)]),
            ("/indie/melody/note", [("i", 60), (tag, value)]),
            ("/indie/tempo", [(tag, value)]),
            ("/indie/generate", [("s", "x"), (tag, value), ("i", 1)]),
            ("/indie/generate", [("s", "x"), ("f", 1.0), (tag, value)]),
            ("/indie/live", [(tag, value)]),
            ("/indie/reply", [("s", "127.0.0.1"), (tag, value)]),
            ("/indie/set", [(tag, value), ("i", 1)]),
        ]
        return osc_message(*rng.choice(choices))

    def unknown_addresses(self) -> bytes:
        rng = self.rng
        known = self._route()
        address = rng.choice((
            "/" + self._word(),
            "/indie/" + self._word(),
            known.upper(), known + "/", known + "x", known[:-1], known.replace("/", "//"),
            "/indie/*", "/indie/[a-z]*", "/indie/{ping,status}", "/*", "/", "//",
            "/indie/ping\u202e", "/\u2603/" + self._word(), "/indie/" + "/".join(["x"] * 50),
        ))
        return osc_message(address, [self._any_arg() for _ in range(rng.randint(0, 3))])

    def wrong_arity(self) -> bytes:
        rng = self.rng
        address, args = self._valid()
        args = list(args)
        if args and rng.random() < 0.5:
            del args[rng.randrange(len(args)):]  # too few
        else:
            args += [self._any_arg() for _ in range(rng.randint(1, 8))]  # too many
        return osc_message(address, args)

    def many_message_bundles(self) -> bytes:
        elements = [self._rejected_message() for _ in range(self.rng.randint(2, 64))]
        if self.rng.random() < 0.2:
            elements.append(osc_bundle([self._rejected_message() for _ in range(3)]))
        return osc_bundle(elements, timetag=self.rng.choice((0, 1, 2**64 - 1)))


def owed_errors(data: bytes) -> list[str] | None:
    """The /indie/error codes the server owes for `data`, in order; None if the server would
    act on some message in it (the fuzzer then draws another)."""
    try:
        messages = decode(data)
    except Malformed:
        return ["malformed"]
    codes = []
    for message in messages:
        try:
            parse_message(message.address, message.args)
        except CommandError as error:
            codes.append(error.code)
        else:
            return None
    return codes


# -- the server and the reply port ----------------------------------------------------------

class ReplyCounter:
    """Receives the server's replies on a loopback port and counts them."""

    def __init__(self) -> None:
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.socket.bind(("127.0.0.1", 0))
        self.socket.settimeout(0.1)
        self.port = self.socket.getsockname()[1]
        self.errors = 0
        self.codes: collections.Counter[str] = collections.Counter()
        self.texts: dict[str, list[str]] = collections.defaultdict(list)  # first few per code
        self.others: collections.Counter[str] = collections.Counter()
        self.pongs = 0
        self.changed = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fuzz-replies", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.socket.recv(MAX_UDP)
            except TimeoutError:
                continue
            try:
                (message,) = decode(data)
            except (Malformed, ValueError):
                address, args = "(undecodable)", []
            else:
                address, args = message.address, message.args
            with self.changed:
                if address == "/indie/error":
                    code = str(args[1]) if len(args) > 2 else "?"
                    self.errors += 1
                    self.codes[code] += 1
                    if len(self.texts[code]) < 10:
                        self.texts[code].append(str(args[2]) if len(args) > 2 else "")
                elif address == "/indie/pong":
                    self.pongs += 1
                else:
                    self.others[address] += 1
                self.changed.notify_all()

    def wait_errors(self, count: int, timeout: float) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: self.errors >= count, timeout)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2.0)
        self.socket.close()


def start_server(config: FuzzConfig, reply_port: int, folder: Path,
                 log) -> tuple[subprocess.Popen, int]:
    """`indie serve --no-audio` on a free loopback port; returns the process and its port."""
    command = [sys.executable, "-m", "bridge.cli", "serve", "--no-audio", "--port", "0",
               "--reply-port", str(reply_port), "--out-dir", str(folder / "out"), "--in-dir",
               str(folder / "in"), "--rate-limit", f"{config.rate_limit:g}",
               *config.serve_args]
    (folder / "in").mkdir()
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, text=True, env=env,
                               cwd=Path(__file__).resolve().parents[1])
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in process.stdout], daemon=True).start()
    deadline = time.monotonic() + config.startup_timeout
    while time.monotonic() < deadline and process.poll() is None:
        try:
            line = lines.get(timeout=0.5)
        except queue.Empty:
            continue
        found = re.search(r"OSC on udp://[\d.]+:(\d+)", line)
        if found:
            return process, int(found.group(1))
    process.kill()
    raise RuntimeError(f"indie serve did not start (exit code {process.poll()}); see its log")


def ping(sender: socket.socket, port: int, replies: ReplyCounter, timeout: float) -> float | None:
    """Seconds from /indie/ping to /indie/pong, or None if none came within `timeout`."""
    with replies.changed:
        before = replies.pongs
    start = time.perf_counter()
    sender.sendto(osc_message("/indie/ping", []), ("127.0.0.1", port))
    with replies.changed:
        if not replies.changed.wait_for(lambda: replies.pongs > before, timeout):
            return None
    return time.perf_counter() - start


def _pings(sender, port, replies, count: int = 5) -> list[float | None]:
    results = []
    for _ in range(count):
        latency = ping(sender, port, replies, 5.0)
        results.append(None if latency is None else round(latency * 1000, 3))
        time.sleep(0.05)
    return results


# -- the run ---------------------------------------------------------------------------------

def bench_fuzz(config: FuzzConfig) -> dict[str, Any]:
    """Fuzz a fresh `indie serve` and report what happened (see the module docstring)."""
    generator = Generator(config.seed)
    names = list(generator.categories)
    replies = ReplyCounter()
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.bind(("127.0.0.1", 0))
    with tempfile.TemporaryDirectory(prefix="indie-fuzz-") as folder, \
            open(Path(folder) / "serve.log", "w+") as log:
        process, port = start_server(config, replies.port, Path(folder), log)
        try:
            deadline = time.monotonic() + config.startup_timeout
            while ping(sender, port, replies, 1.0) is None:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("indie serve never answered /indie/ping")
            ping_before = _pings(sender, port, replies)
            status_before = proc_status(process.pid)
            categories = {name: {"packets": 0, "bytes": 0, "errors_owed": 0, "drawn_again": 0}
                          for name in names}
            owed_codes: collections.Counter[str] = collections.Counter()
            in_flight: collections.deque[tuple[int, int]] = collections.deque()
            owed = lost = flight_bytes = 0
            samples = []
            every = max(1, config.packets // max(1, config.samples))
            started = time.perf_counter()

            def settle_oldest() -> None:
                nonlocal lost, flight_bytes
                owed_then, size = in_flight.popleft()
                flight_bytes -= size
                if not replies.wait_errors(owed_then - lost, config.reply_timeout):
                    lost += owed_then - lost - replies.errors

            for index in range(config.packets):
                name = names[index % len(names)]
                while True:
                    data = generator.categories[name]()
                    codes = owed_errors(data)
                    if codes is not None and len(data) <= MAX_UDP:
                        break
                    categories[name]["drawn_again"] += 1
                while in_flight and (len(in_flight) >= config.window
                                     or flight_bytes + len(data) > config.window_bytes):
                    settle_oldest()
                sender.sendto(data, ("127.0.0.1", port))
                owed += len(codes)
                owed_codes.update(codes)
                in_flight.append((owed, len(data)))
                flight_bytes += len(data)
                entry = categories[name]
                entry["packets"] += 1
                entry["bytes"] += len(data)
                entry["errors_owed"] += len(codes)
                if (index + 1) % every == 0:
                    samples.append({"packets_sent": index + 1, **proc_status(process.pid)})
            while in_flight:
                settle_oldest()
            duration = time.perf_counter() - started
            time.sleep(0.5)  # late or surplus replies
            crashed = process.poll() is not None
            ping_after = [] if crashed else _pings(sender, port, replies)
            status_after = None if crashed else proc_status(process.pid)
        finally:
            exit_code = _stop(process)
            replies.close()
            sender.close()
        log.seek(0)
        log_text = log.read()
    return {
        "packets": config.packets,
        "seed": config.seed,
        "server_rate_limit": config.rate_limit,
        "duration_s": round(duration, 2),
        "packets_per_s": round(config.packets / duration, 1),
        "bytes_sent": sum(c["bytes"] for c in categories.values()),
        "categories": categories,
        "crashed": crashed,
        "exit_code_after_sigterm": exit_code,
        "server_log_tracebacks": log_text.count("Traceback"),
        "answered_ping_after": bool(ping_after) and all(p is not None for p in ping_after),
        "ping_before_ms": ping_before,
        "ping_after_ms": ping_after,
        "errors_owed": owed,
        "errors_received": replies.errors,
        "error_codes_owed": dict(sorted(owed_codes.items())),
        "error_codes_received": dict(sorted(replies.codes.items())),
        "other_replies": dict(replies.others),
        "reply_timeouts_errors_missing": lost,
        "before": status_before,
        "after": status_after,
        "samples": samples,
        "method": (
            "Each datagram's owed /indie/error codes are computed in the fuzzer with the "
            "server's own decoding rules; datagrams holding a message the server would act on "
            "are drawn again (drawn_again). At most `window` datagrams are unanswered at a "
            "time, so no reply is lost to a full UDP buffer; errors_received counts every "
            "/indie/error that reached the reply port during the run and 0.5 s after it. "
            "Memory and threads: /proc/PID/status (VmRSS, VmHWM = peak, Threads)."),
        "window": config.window,
    }


def _stop(process: subprocess.Popen) -> int | None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            return process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            return None
    return process.returncode
