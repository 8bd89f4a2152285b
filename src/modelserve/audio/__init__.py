"""Audio in and out for the speech kinds: decoding uploads, subtitles, phonemes, encoders."""
