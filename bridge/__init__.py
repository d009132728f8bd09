"""indie's bridge to the outside world: CLI, OSC/MIDI server, audio out, presets."""
