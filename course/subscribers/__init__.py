"""A subscriber's life: signup, confirmation, pause/resume, privacy, CSV import/export."""
