"""Training data: scores from the music21 corpus rendered to audio with captions and melodies."""
