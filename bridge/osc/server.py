"""OSC over UDP: the transport. Datagrams in → messages → commands → Session; replies out.

One thread reads datagrams from the socket and hands each to `OscRouter.handle_datagram`
(also callable without sockets), which rate-limits the sender, decodes strictly
(bridge.osc.packets) and routes. Datagrams that are not OSC get `/indie/error "" malformed ...`,
a flooding sender `/indie/error "" rate_limited ...` (at most once a second); nothing a client
sends can stop the server.
"""

from __future__ import annotations

import logging
import socket
import threading
from typing import Any

from pythonosc.osc_message_builder import BuildError, OscMessageBuilder

from bridge.jobs import Address
from bridge.osc.addresses import parse_message
from bridge.osc.commands import CommandError
from bridge.osc.packets import Malformed, decode
from bridge.rate_limit import RateLimit, RateLimiter

logger = logging.getLogger(__name__)

MAX_DATAGRAM = 65536  # read a whole datagram, whatever its size; the decoder judges it
MAX_ERROR = 200  # characters of an error message sent back
RECEIVE_BUFFER = 1 << 20
DEFAULT_LIMIT = RateLimit()


class ReplySender:
    """Sends OSC messages from one UDP socket (thread-safe: one datagram per call)."""

    def __init__(self) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sent = 0

    def __call__(self, target: Address, address: str, *args: Any) -> None:
        builder = OscMessageBuilder(address)
        for arg in args:
            builder.add_arg(_osc_arg(arg))
        try:
            dgram = builder.build().dgram
        except BuildError:  # a value OSC cannot carry: a bug to log, never a reason to stop
            logger.exception("cannot encode reply %s %r", address, args)
            return
        try:
            self._socket.sendto(dgram, target)
            self.sent += 1
        except OSError as error:  # an unreachable client must not stop a job
            logger.debug("reply %s to %s failed: %s", address, target, error)

    def close(self) -> None:
        self._socket.close()


class OscRouter:
    """Datagram → (rate limit) → messages → commands → session; every refusal is answered.

    Args:
        session: the Session (only `target`, `error` and `handle` are used).
        reply: the sender replies go out through.
        limiter: per-sender rate limit, or None for none.
    """

    def __init__(self, session, reply: ReplySender, limiter: RateLimiter | None = None) -> None:
        self.session = session
        self.reply = reply
        self.limiter = limiter

    def handle_datagram(self, data: bytes, sender: Address) -> None:
        """Act on one datagram; never raises."""
        if not self._admit(sender):
            return  # dropped before parsing: a flood costs a lookup, not a parse
        try:
            messages = decode(data)
        except Malformed as error:
            self._error(sender, "", "malformed", f"not an OSC packet ({error})")
            return
        for number, message in enumerate(messages):
            if number and not self._admit(sender):  # each message of a bundle costs a token
                return
            try:
                self.session.handle(parse_message(message.address, message.args), sender)
            except CommandError as error:
                self._error(sender, error.job_id, error.code, error.message)
            except Exception as error:  # a bug in the table or an action: answer, log, go on
                logger.exception("handling %s failed", message.address[:80])
                self._error(sender, "", "internal", f"{type(error).__name__}: {error}")

    def _admit(self, sender: Address) -> bool:
        limiter = self.limiter
        if limiter is None or limiter.take(sender):
            return True
        if limiter.notice_due(sender):
            self._error(sender, "", "rate_limited",
                        f"more than {limiter.limit.rate:g} messages/s (burst "
                        f"{limiter.limit.burst:g}) from {sender[0]}:{sender[1]}; dropping "
                        "messages until it slows down")
        return False

    def _error(self, sender: Address, job_id: str, code: str, message: str) -> None:
        self.session.error(self.session.target(sender), job_id, code, message[:MAX_ERROR])


class OscServer:
    """A UDP OSC server on its own thread.

    Args:
        session: the Session commands go to.
        reply: the sender replies go out through.
        host: interface to bind (127.0.0.1 by default: nothing off this machine reaches it).
        port: UDP port (0 picks a free one; see `.port`).
        rate_limit: per-sender limit (None: none).
    """

    def __init__(self, session, reply: ReplySender, host: str = "127.0.0.1",
                 port: int = 9000, rate_limit: RateLimit | None = DEFAULT_LIMIT) -> None:
        self.router = OscRouter(session, reply)
        self.set_rate_limit(rate_limit)
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            # Room for a scheduler slice of flood, so other senders' datagrams are not lost
            # while this thread waits for the CPU (the kernel caps it at net.core.rmem_max).
            self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
            self._socket.bind((host, port))
        except OSError:
            self._socket.close()
            raise
        self._socket.settimeout(0.1)  # how often the loop looks at the stop flag
        self.host, self.port = self._socket.getsockname()[:2]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="indie-osc", daemon=True)

    def set_rate_limit(self, rate_limit: RateLimit | None) -> None:
        self.router.limiter = RateLimiter(rate_limit) if rate_limit else None

    def start(self) -> None:
        self._thread.start()
        logger.info("OSC server on udp://%s:%d", self.host, self.port)

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, sender = self._socket.recvfrom(MAX_DATAGRAM)
            except TimeoutError:
                continue
            except OSError as error:  # e.g. ICMP feedback from an earlier reply; keep serving
                if self._stop.is_set():
                    return
                logger.debug("receive failed: %s", error)
                continue
            try:
                self.router.handle_datagram(data, sender)
            except Exception:  # handle_datagram answers everything; this is the last guard
                logger.exception("datagram from %s:%s failed", *sender[:2])

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(2.0)
        self._socket.close()


def _osc_arg(value: Any) -> Any:
    if isinstance(value, bool):
        return int(value)
    return value
