"""CLI command groups, one module each; registered in outreach.cli."""
