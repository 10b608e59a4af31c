"""Personal fields: declared on payload models, found by walking their annotations.

A payload field that holds what a person said or what is known about them is declared
``PersonalStr`` (or ``Annotated[str, PERSONAL]``): the store encrypts it with the user's data key
at append (:mod:`eventstore.encryption`). A nested model or a list of them is walked, so a new
event type that reuses a declared model (``Candidate``, say) cannot forget to.
"""

from __future__ import annotations

import functools
import types
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated, Any, NamedTuple, Union, get_args, get_origin

from pydantic import BaseModel


@dataclass(frozen=True)
class Personal:
    """Marks a ``str`` field as personal data (use :data:`PersonalStr` / :data:`IndexedPersonalStr`).

    ``indexed``: the sealed value also carries a blind index (an HMAC under the user's key), so
    that the store can still find events by the field's value for that user
    (:meth:`~eventstore.postgres.PostgresEventStore.find_events`).
    """

    indexed: bool = False


PERSONAL = Personal()
INDEXED = Personal(indexed=True)
PersonalStr = Annotated[str, PERSONAL]
"""A ``str`` payload field that holds personal data: encrypted at rest with the user's key."""
IndexedPersonalStr = Annotated[str, INDEXED]
"""A personal ``str`` field the store can look events up by (for one user)."""

ITEMS = "*"
"""A path segment meaning "every item of this list" (or every value of this dict)."""

Path = tuple[str, ...]


class PersonalField(NamedTuple):
    """One personal field of a model: where it is, and whether it carries a blind index."""

    path: Path
    indexed: bool


@functools.cache
def personal_paths(model: type[BaseModel]) -> tuple[PersonalField, ...]:
    """``model``'s personal fields (path segments: field names, :data:`ITEMS` for list items).

    :raises TypeError: a field marked personal is not a ``str`` (or ``str | None``).
    """
    found: list[PersonalField] = []
    for name, field in model.model_fields.items():
        marker = _marker(field.metadata)
        if marker is not None:
            _require_str(model, name, field.annotation)
            found.append(PersonalField((name,), marker.indexed))
        else:
            found.extend(
                PersonalField((name, *f.path), f.indexed) for f in _walk(model, name, field.annotation)
            )
    return tuple(found)


def _marker(metadata: Iterable[Any]) -> Personal | None:
    return next((m for m in metadata if isinstance(m, Personal)), None)


def _walk(model: type[BaseModel], name: str, annotation: Any) -> list[PersonalField]:
    origin = get_origin(annotation)
    if origin is Annotated:
        inner, *meta = get_args(annotation)
        marker = _marker(meta)
        if marker is not None:
            _require_str(model, name, inner)
            return [PersonalField((), marker.indexed)]
        return _walk(model, name, inner)
    if origin in (Union, types.UnionType):
        found: list[PersonalField] = []
        for arg in get_args(annotation):
            found.extend(f for f in _walk(model, name, arg) if f not in found)
        return found
    if origin in (list, tuple, set, frozenset):
        return [
            PersonalField((ITEMS, *f.path), f.indexed)
            for arg in get_args(annotation)
            if arg is not Ellipsis
            for f in _walk(model, name, arg)
        ]
    if origin is dict:
        value_type = get_args(annotation)[1] if get_args(annotation) else Any
        return [PersonalField((ITEMS, *f.path), f.indexed) for f in _walk(model, name, value_type)]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return list(personal_paths(annotation))
    return []


def _require_str(model: type[BaseModel], name: str, annotation: Any) -> None:
    allowed = {str, type(None)}
    args = set(get_args(annotation)) if get_origin(annotation) in (Union, types.UnionType) else {annotation}
    if not args <= allowed or str not in args:
        raise TypeError(f"{model.__name__}.{name} is marked personal but is not a str field")
