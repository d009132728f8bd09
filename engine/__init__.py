"""indie's engine: codec, independence loss, language model, data and evaluation.

The engine never imports the bridge (OSC/MIDI, audio out, CLI).
"""

__version__ = "0.1.0"
