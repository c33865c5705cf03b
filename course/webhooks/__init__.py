"""Outbound webhooks: the course tells other tools what happened (a reader confirmed, a
lesson went out, a reader left ...) by posting signed JSON events to the endpoints of
``COURSE_WEBHOOKS``.

endpoints (the setting, parsed: pure), events (an event, its body and its signature: pure),
emit (the cheap enqueue every state change calls), post (one HTTP request), delivery (a run
of the ``course.webhook`` task: who gets what again, and when), lessons (the events of a
delivery batch). Not to be confused with :mod:`course.web.webhook`, which takes SendGrid's
events in.
"""
