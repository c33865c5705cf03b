"""Running on one machine: `course run` (supervise) and the demo."""
