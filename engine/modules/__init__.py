"""Building blocks of the models: streamable convolutions and the SEANet encoder/decoder."""
