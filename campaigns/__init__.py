"""Contact import, campaign lifecycle, calling windows, retry and escalation policy, scheduler."""
