"""Email: render lessons (with plaintext and placeholders), SendGrid grouping, samples, checks."""
