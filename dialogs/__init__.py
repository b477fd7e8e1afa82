"""Screening scripts (YAML), the pure dialog engine, NLU, and the dialog runner."""
