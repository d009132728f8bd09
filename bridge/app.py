"""The running bridge: engine + session + OSC server + optional sound card and MIDI in.

`Bridge` assembles the parts `indie serve` runs; tests and the benchmark build it with a test
engine and port 0.
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass
from pathlib import Path

from bridge.midi_in import MidiIn, MidiRouter
from bridge.osc.server import OscServer, ReplySender
from bridge.presets import Preset, cc_value
from bridge.rate_limit import RateLimit
from bridge.session import Folders, Session

logger = logging.getLogger(__name__)

PRESETS_DIR = Path(__file__).resolve().parents[1] / "presets"


@dataclass(frozen=True)
class BridgeOptions:
    """What `indie serve` takes from its command line."""

    host: str = "127.0.0.1"
    port: int = 9000
    reply_port: int = 9001
    out_dir: Path = Path("renders")
    in_dir: Path | None = None  # /indie/continue reads from here (default: out_dir)
    presets_dir: Path = PRESETS_DIR
    audio: bool = True
    audio_device: str | None = None
    midi_in: str | None = None
    midi_file: Path | None = None
    queue_size: int = 8
    rate_limit: RateLimit | None = RateLimit()  # per sender; None: no limit
    buffer_seconds: float = 1.0
    prefill_seconds: float = 0.08


class Bridge:
    """Starts everything on construction; `close()` stops it all (also as a context manager)."""

    def __init__(self, engine, options: BridgeOptions) -> None:
        self.options = options
        self.reply = ReplySender()
        self.audio = None
        if options.audio:
            from bridge.audio_out import AudioOut

            self.audio = AudioOut(engine.sample_rate, options.audio_device,
                                  options.buffer_seconds, options.prefill_seconds)
        folders = Folders(Path(options.out_dir), Path(options.in_dir or options.out_dir),
                          Path(options.presets_dir))
        remote = not _is_loopback(options.host)
        if remote:
            logger.warning("OSC listens on %s: other machines can drive this bridge",
                           options.host)
        self.session = Session(engine, folders, self.reply, options.reply_port, self.audio,
                               options.queue_size, allow_remote_replies=remote)
        self.session.start()
        self.server = OscServer(self.session, self.reply, options.host, options.port,
                                options.rate_limit)
        self.server.start()
        self.midi = self._open_midi(folders.presets)

    def _open_midi(self, presets: Path) -> MidiIn | None:
        if not (self.options.midi_in or self.options.midi_file):
            return None
        names = sorted(p.stem for p in presets.glob("*.yaml"))
        router = MidiRouter({}, names, cc_value)
        midi = MidiIn(router, lambda command: self.session.handle(command, None))

        def take_cc_map(preset: Preset) -> None:
            router.cc_map = dict(preset.cc)

        self.session.on_preset.append(take_cc_map)
        if self.options.midi_in:
            midi.open_port(self.options.midi_in)
        if self.options.midi_file:
            midi.play_file(self.options.midi_file)
        return midi

    @property
    def port(self) -> int:
        return self.server.port

    def close(self) -> None:
        self.server.close()
        if self.midi is not None:
            self.midi.close()
        self.session.close()
        if self.audio is not None:
            self.audio.close()
        self.reply.close()

    def __enter__(self) -> Bridge:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"
