"""The bad-input corpus (cases.py) and the harness that runs one case on a fresh store (harness.py)."""
