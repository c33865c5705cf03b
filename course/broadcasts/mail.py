"""A broadcast's email: compiled once from the template text it was created with, in the
course's layout (the same footer, headers and one-click unsubscribe as a lesson), then
filled per reader like a lesson.

:class:`BroadcastRenderer` is a schedule's :class:`Renderer` that also knows some
broadcasts, under their ledger ids (``b:{id}``): the delivery renders through it unchanged.
"""

from __future__ import annotations

import logging
from collections import OrderedDict

from course.mail.render import CompiledLesson, Renderer
from course.models.broadcast import BROADCAST, Broadcast
from course.models.email import Email, Recipient
from course.models.schedule import Lesson

log = logging.getLogger("course.broadcasts")
_CACHE_SIZE = 32
# (id of the renderer, broadcast id) -> compiled: a broadcast's text never changes, so a
# worker compiles it once per schedule load, not once per batch.
_compiled: OrderedDict[tuple[int, str], tuple[Renderer, CompiledLesson]] = OrderedDict()


def broadcast_lesson(b: Broadcast) -> Lesson:
    """The broadcast as the layouts see an email (``lesson.kind`` is ``broadcast``)."""
    return Lesson(id=b.entry, day=0, subject=b.subject, preheader="", template=b.template,
                  phase_id="", number=0, kind=BROADCAST)  # fmt: skip


def compile_broadcast(renderer: Renderer, b: Broadcast) -> CompiledLesson:
    """The broadcast's final templates (:class:`RenderError` naming its file and line)."""
    key = (id(renderer), b.id)
    hit = _compiled.get(key)
    if hit is not None and hit[0] is renderer:
        _compiled.move_to_end(key)
        return hit[1]
    compiled = renderer.compile_source(broadcast_lesson(b), f"templates/{b.template}", b.source)
    _compiled[key] = (renderer, compiled)
    while len(_compiled) > _CACHE_SIZE:
        _compiled.popitem(last=False)
    return compiled


class BroadcastRenderer:
    """``renderer``'s emails, and these broadcasts' under ``b:{id}``. A broadcast that no
    longer compiles (the layout changed under it) is left out, and logged: the delivery
    then retries it, as it does a lesson this worker does not know (``strict``: raises
    :class:`RenderError` instead)."""

    def __init__(self, renderer: Renderer, broadcasts: list[Broadcast], strict: bool = False):
        self._renderer = renderer
        self._extra: dict[str, CompiledLesson] = {}
        for b in broadcasts:
            try:
                self._extra[b.entry] = compile_broadcast(renderer, b)
            except Exception as exc:  # one bad broadcast must not stop the lessons
                if strict:  # a preview or a test: say why
                    raise
                log.error("broadcast %s does not compile: %s", b.id, exc)
        self.lesson_ids = renderer.lesson_ids | frozenset(self._extra)

    def compiled(self, lesson_id: str) -> CompiledLesson:
        extra = self._extra.get(lesson_id)
        return extra if extra is not None else self._renderer.compiled(lesson_id)

    def __getattr__(self, name: str) -> object:
        """Anything else (``auto_experiments``, ...) is the schedule's renderer's."""
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._renderer, name)

    def render(self, lesson_id: str, recipient: Recipient, decided: str | None = None) -> Email:
        extra = self._extra.get(lesson_id)
        if extra is None:
            return self._renderer.render(lesson_id, recipient, decided)
        # Its custom_args carry ``lesson_id`` = ``b:{id}``: the Event Webhook counts by it.
        return self._renderer.render_compiled(extra, recipient)

    def render_confirmation(self, recipient: Recipient, confirm_url: str) -> Email:
        return self._renderer.render_confirmation(recipient, confirm_url)
