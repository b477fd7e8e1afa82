"""Prompt synthesis (edge-tts online, espeak-ng offline) and the prompt cache in telephone format."""
