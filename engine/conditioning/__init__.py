"""What the LM is conditioned on: text, melody and tempo, batched as one `Conditions`.

- text: token embeddings of a frozen sentence encoder (`text.TextEncoder`), attended to by
  cross-attention;
- melody: one-hot chroma at the codec frame rate (`engine.melody`), added to the step input of
  the frame it belongs to, so it does not lengthen the sequence;
- tempo: BPM and the time of the first downbeat, turned into a log-BPM embedding and a beat
  phase per frame (`tempo.py`).

Dropping a condition (for classifier-free guidance, [MG]) sets it to its "none" value: an
all-False text mask, an all-zero melody, BPM 0.
"""

from engine.conditioning.conditions import Conditions

__all__ = ["Conditions"]
