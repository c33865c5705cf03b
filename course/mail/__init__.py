"""Email: render lessons, plain text, SendGrid grouping, samples and content checks."""
