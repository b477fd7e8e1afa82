"""Streaming recognition (Vosk), voice activity and endpointing, DTMF detection, resampling."""
