"""A JACK client that records what another client plays: for tests and `indie bench bridge`.

Connects its input to the bridge's output port (PortAudio's JACK client) and stores every
period in a preallocated buffer, noting the wall time at which the first sound arrived.
Needs the JACK-Client package (the `test` extra) and a running JACK server.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
import time
import uuid

import numpy as np

SOUND_THRESHOLD = 1e-4


class JackRecorder:
    """Records one JACK output port.

    Args:
        source: the port to record (e.g. "PortAudio:out_0").
        seconds: buffer length; recording stops when it is full.
        server: JACK server name (None: the default / $JACK_DEFAULT_SERVER).
    """

    def __init__(self, source: str, seconds: float, server: str | None = None,
                 name: str = "indie-probe") -> None:
        import jack

        self.client = jack.Client(name, no_start_server=True, servername=server)
        self.rate = self.client.samplerate
        self.buffer = np.zeros(int(seconds * self.rate), np.float32)
        self.written = 0
        self.first_sound_time: float | None = None  # monotonic time of the first non-silence
        self._recording = threading.Event()
        self.port = self.client.inports.register("in")
        self.xruns = 0  # JACK cycles that ran late (the graph, not the bridge's buffer)
        self.client.set_process_callback(self._process)
        self.client.set_xrun_callback(self._xrun)
        self.client.activate()
        self.client.connect(source, self.port)

    def start(self) -> None:
        """Begin recording now (periods before this are ignored)."""
        self.written = 0
        self.xruns = 0
        self.first_sound_time = None
        self._recording.set()

    def _xrun(self, delay: float) -> None:
        if self._recording.is_set():
            self.xruns += 1

    def _process(self, frames: int) -> None:
        if not self._recording.is_set():
            return
        data = self.port.get_array()
        n = min(frames, len(self.buffer) - self.written)
        if n <= 0:
            return
        self.buffer[self.written:self.written + n] = data[:n]
        if self.first_sound_time is None and np.abs(data[:n]).max() > SOUND_THRESHOLD:
            self.first_sound_time = time.monotonic()
        self.written += n

    def audio(self) -> np.ndarray:
        return self.buffer[:self.written].copy()

    def close(self) -> None:
        self._recording.clear()
        self.client.deactivate()
        self.client.close()


def align(reference: np.ndarray, recorded: np.ndarray) -> tuple[int, float]:
    """Where `reference` starts inside `recorded`, by FFT cross-correlation.

    Returns:
        (offset in samples, normalised correlation at that offset, 1.0 = identical shape).
    """
    n = len(reference) + len(recorded)
    size = 1 << (n - 1).bit_length()
    spectrum = np.fft.rfft(recorded, size) * np.conj(np.fft.rfft(reference, size))
    correlation = np.fft.irfft(spectrum, size)[:len(recorded)]
    offset = int(np.argmax(correlation))
    segment = recorded[offset:offset + len(reference)]
    ref = reference[:len(segment)]
    denominator = float(np.linalg.norm(segment) * np.linalg.norm(ref)) or 1.0
    return offset, float(np.dot(segment, ref) / denominator)


class JackServer:
    """A private JACK server with the dummy backend (no sound card needed), as a context manager.

    Sets $JACK_DEFAULT_SERVER so that PortAudio (sounddevice) and JACK-Client find it, and
    re-initialises PortAudio around it: PortAudio lists JACK only if the server ran when it
    initialised, and its JACK client must leave before the server stops.

    Args:
        rate: the server's sample rate.
        period: frames per period (256 at 48 kHz: 5.3 ms).
        portaudio: re-initialise this process's PortAudio around the server. False when only
            child processes play through it (a server killed under a live PortAudio client
            aborts that client's process when PortAudio terminates).
    """

    def __init__(self, rate: int = 48000, period: int = 256, portaudio: bool = True) -> None:
        self.rate, self.period = rate, period
        self.portaudio = portaudio
        self.name = _free_server_name()
        self.process: subprocess.Popen | None = None
        self._old: str | None = None

    def __enter__(self) -> JackServer:
        import jack
        import sounddevice as sd

        if shutil.which("jackd") is None:
            raise FileNotFoundError("jackd is not installed (Debian package jackd2)")
        # jackd logs every xrun: its output goes to a file, since a pipe nobody reads fills up
        # and then blocks the server (and every client call with it).
        self.log = tempfile.NamedTemporaryFile("w+", prefix="jackd-", suffix=".log")
        self.process = subprocess.Popen(
            ["jackd", "--no-realtime", "-t", "5000", "-n", self.name, "-d", "dummy",
             "-r", str(self.rate), "-p", str(self.period)],
            stdout=self.log, stderr=subprocess.STDOUT)
        self._old = os.environ.get("JACK_DEFAULT_SERVER")
        os.environ["JACK_DEFAULT_SERVER"] = self.name
        deadline = time.monotonic() + 10
        while True:
            try:
                jack.Client("indie-wait", no_start_server=True, servername=self.name).close()
                break
            except jack.JackError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.log.seek(0)
                    said = self.log.read()[-2000:]
                    self._stop()
                    raise RuntimeError(f"jackd did not start: {said}") from None
                time.sleep(0.1)
        if self.portaudio:
            sd._terminate()
            sd._initialize()
        return self

    def __exit__(self, *exc) -> None:
        import sounddevice as sd

        if self.portaudio:
            sd._terminate()
        self._stop()
        if self.portaudio:
            sd._initialize()

    def _stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()
        if self._old is None:
            os.environ.pop("JACK_DEFAULT_SERVER", None)
        else:
            os.environ["JACK_DEFAULT_SERVER"] = self._old


def _free_server_name() -> str:
    """A server name no running jackd uses, from a small fixed pool.

    JACK keeps 8 server slots in shared memory and reclaims a dead server's slot only when a
    server of the same name starts. Random names would let servers that died without cleaning
    up (SIGKILL) fill every slot; reused names heal them.
    """
    running = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    for index in range(8):
        name = f"indie-{index}"
        if f"-n {name} " not in running:
            return name
    return f"indie-{uuid.uuid4().hex[:8]}"
