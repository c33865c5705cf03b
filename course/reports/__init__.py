"""What the course does, read back: stats, metrics, impact of an edit, one subscriber."""
