"""indie's engine: codec, independence loss, language model, data and evaluation.

The engine never imports the bridge (OSC/MIDI, audio out, CLI).
"""

__version__ = "0.1.0"

_PUBLIC = ("Engine", "EngineError", "GeneratedAudio")


def __getattr__(name: str):
    """`from engine import Engine` without importing torch for `indie --version`."""
    if name in _PUBLIC:
        from engine import engine as _engine

        return getattr(_engine, name)
    raise AttributeError(f"module 'engine' has no attribute {name!r}")
