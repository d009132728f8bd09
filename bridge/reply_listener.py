"""A loopback OSC listener that records every reply of the bridge, for the benchmarks."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class ReplyListener:
    """Records OSC replies on a free loopback port.

    Args:
        on_reply: also called as on_reply(address, args) for each reply.
        record: keep every reply in `items` (for `wait`); off for long runs.
    """

    def __init__(self, on_reply: Callable[[str, tuple], None] | None = None,
                 record: bool = True) -> None:
        from pythonosc.dispatcher import Dispatcher
        from pythonosc.osc_server import BlockingOSCUDPServer

        self.items: list[tuple[float, str, tuple]] = []
        self.on_reply, self.record = on_reply, record
        self._cond = threading.Condition()
        dispatcher = Dispatcher()
        dispatcher.set_default_handler(self._add)
        self.server = BlockingOSCUDPServer(("127.0.0.1", 0), dispatcher)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def _add(self, address: str, *args) -> None:
        if self.on_reply is not None:
            self.on_reply(address, args)
        if not self.record:
            return
        with self._cond:
            self.items.append((time.monotonic(), address, args))
            self._cond.notify_all()

    def wait(self, address: str, job: str | None = None, timeout: float = 60.0) -> float:
        """The arrival time of the first `address` reply (about `job`, if given)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for when, a, args in self.items:
                    if a == address and (job is None or (args and args[0] == job)):
                        return when
                if address != "/indie/error":
                    for _, a, args in self.items:
                        if a == "/indie/error" and (job is None or args[0] == job):
                            raise RuntimeError(f"bridge error: {args}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no {address} for {job} in {timeout} s")
                self._cond.wait(left)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
