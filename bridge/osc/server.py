"""OSC over UDP: the transport. Datagrams in → messages → commands → Session; replies out.

python-osc's BlockingOSCUDPServer runs on its own thread and hands each datagram to
`OscRouter.handle_datagram`, which does the parsing and routing (also callable without sockets).
Datagrams that are not OSC get `/indie/error "" malformed ...`; nothing a client sends can stop
the server.
"""

from __future__ import annotations

import logging
import socket
import threading
from typing import Any

from pythonosc.dispatcher import Dispatcher
from pythonosc.osc_bundle import OscBundle
from pythonosc.osc_message_builder import OscMessageBuilder
from pythonosc.osc_packet import OscPacket, ParseError
from pythonosc.osc_server import BlockingOSCUDPServer

from bridge.jobs import Address
from bridge.osc.addresses import parse_message
from bridge.osc.commands import CommandError

logger = logging.getLogger(__name__)


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
            self._socket.sendto(builder.build().dgram, target)
            self.sent += 1
        except OSError as error:  # an unreachable client must not stop a job
            logger.debug("reply %s to %s failed: %s", address, target, error)

    def close(self) -> None:
        self._socket.close()


class OscRouter(Dispatcher):
    """python-osc's dispatcher hook, replaced: every datagram goes through the address table."""

    def __init__(self, session, reply: ReplySender) -> None:
        super().__init__()
        self.session = session
        self.reply = reply

    def call_handlers_for_packet(self, data: bytes, client_address: Address) -> list:
        self.handle_datagram(data, client_address)
        return []

    async def async_call_handlers_for_packet(self, data: bytes, client_address: Address) -> list:
        self.handle_datagram(data, client_address)
        return []

    def handle_datagram(self, data: bytes, sender: Address) -> None:
        try:
            packet = OscPacket(data)
        except ParseError as error:
            self.session.error(self.session.target(sender), "", "malformed",
                               f"not an OSC packet ({error})"[:200])
            return
        except Exception as error:  # python-osc may raise others on garbage
            self.session.error(self.session.target(sender), "", "malformed",
                               f"not an OSC packet ({type(error).__name__})")
            return
        for timed in packet.messages:
            message = timed.message
            if isinstance(message, OscBundle):
                continue
            try:
                command = parse_message(message.address, list(message.params))
            except CommandError as error:
                self.session.error(self.session.target(sender), error.job_id, error.code,
                                   error.message)
                continue
            try:
                self.session.handle(command, sender)
            except Exception as error:  # a bug in an action: answer, log, keep serving
                logger.exception("handling %s failed", message.address)
                self.session.error(self.session.target(sender), "", "internal",
                                   f"{type(error).__name__}: {error}")


class _AnswerEveryDatagram(BlockingOSCUDPServer):
    """python-osc drops datagrams that do not look like OSC; we answer them with an error."""

    def verify_request(self, request, client_address) -> bool:
        return True


class OscServer:
    """A UDP OSC server on its own thread.

    Args:
        session: the Session commands go to.
        host: interface to bind (127.0.0.1 by default: nothing off this machine reaches it).
        port: UDP port (0 picks a free one; see `.port`).
    """

    def __init__(self, session, reply: ReplySender, host: str = "127.0.0.1",
                 port: int = 9000) -> None:
        self.router = OscRouter(session, reply)
        self._server = _AnswerEveryDatagram((host, port), self.router)
        self._server.max_packet_size = 65536  # read a whole datagram; the table judges it
        self.host, self.port = self._server.server_address[:2]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={
            "poll_interval": 0.1}, name="indie-osc", daemon=True)

    def start(self) -> None:
        self._thread.start()
        logger.info("OSC server on udp://%s:%d", self.host, self.port)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(2.0)


def _osc_arg(value: Any) -> Any:
    if isinstance(value, bool):
        return int(value)
    return value
