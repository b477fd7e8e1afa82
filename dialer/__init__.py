"""Telephony: the media-session protocol, backends (simulated network, Asterisk AMI + AudioSocket), pacing."""
