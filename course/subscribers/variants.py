"""A reader's check-in or unsubscribe, counted under the subject experiment's variant of the
lesson they had, and an uncertain send settled as sent by the provider's event, counted under
the variant it carried (``P variant:lesson:{id}``, :mod:`course.store.variants`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from course.experiments import VARIANT_NAMES, served_variant

if TYPE_CHECKING:
    from course.store import Store


def count_reader(store: Store, sub_id: str, lesson_id: str | None, field: str) -> str | None:
    """Count a reader's check-in or unsubscribe under the variant of ``lesson_id`` they were
    sent: the pinned one, the winner's when it was decided before their send, else their own
    (recomputed from their id and the lesson). Nothing for a lesson never sent as part of an
    experiment. Returns the letter counted, or None."""
    if not lesson_id:
        return None
    n, pin = store.variant_basis(lesson_id)
    if n < 2:
        return None
    if pin:
        letter = pin
    else:
        winner = store.experiment_winners().get(lesson_id)
        entry = store.entry(sub_id, lesson_id)
        letter = served_variant(
            sub_id,
            lesson_id,
            n,
            winner.variant if winner else None,
            winner.at if winner else None,
            entry.at if entry else None,
        )
    store.count_variant_reader(lesson_id, letter, field)
    return letter


def count_settled_variant(store: Store, lesson_id: str, letter: str) -> None:
    """An uncertain send that the provider's event proved went through: counted as sent
    under the variant its event carried (the lesson's experiment as last counted)."""
    n, pin = store.variant_basis(lesson_id)
    if n >= 2 and letter in VARIANT_NAMES[:n]:
        store.count_variant_sends(lesson_id, n, pin, [letter])
