"""Readers' replies to the course's emails: what SendGrid's Inbound Parse posts, read
(:mod:`.inbound`), made into plain text (:mod:`.text`) and attached to the reader who wrote and
the lesson they answered (:mod:`.attach`). The web route is :mod:`course.web.inbound`; the
Redis keys are in :mod:`course.store.replies`. A reply is never answered automatically."""
