"""Frozen types shared by every layer: the schedule, the subscriber, the email."""
