"""The admin page at ``/admin``, behind ``COURSE_ADMIN_TOKEN``: the course's stats (from
:mod:`course.reports.stats`), the lesson gallery, readers' replies, a subscriber lookup,
and pause, resume, unsubscribe, export and erase.

Without a token set every ``/admin`` path answers 404 (and the log says why). With one, a
browser logs in with a form: the answer sets an HttpOnly, SameSite=Strict cookie (Secure
over https) holding a session signed with ``COURSE_SECRET_KEY`` that also carries the CSRF
token every POST form must echo. Each session also has an id kept in Redis for its lifetime
(``P admin:session:{id}``), checked on every request: signing out deletes it, so a copy of
the cookie stops working too. A script sends ``Authorization: Bearer TOKEN`` instead
and needs no CSRF token (a browser never adds that header by itself). Tokens are compared
in constant time. Sign-in attempts (form or bearer) are counted per IP address before the
token is compared, and a correct token gives its attempt back: only failures stay counted, and
parallel guesses cannot all slip under the limit. Every state change goes through
:mod:`course.subscribers.lifecycle` or :mod:`course.subscribers.privacy`.
"""

from course.web.admin.auth import COOKIE, MAX_FAILURES, SESSION_MAX_AGE
from course.web.admin.install import install_admin

__all__ = ["COOKIE", "MAX_FAILURES", "SESSION_MAX_AGE", "install_admin"]
