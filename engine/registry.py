"""A tiny registry of component types keyed by their profile ``type`` string.

One :class:`Registry` exists per kind of component (authenticators, policies, sinks, ...).
Implementations register themselves with a decorator::

    AUTHENTICATORS: Registry[AuthenticatorFactory] = Registry("auth")

    @AUTHENTICATORS.register("jwt")
    class JwtAuthenticator: ...

and the build step looks them up with :meth:`Registry.get`, which raises :class:`UnknownType`
naming the valid choices and the nearest match.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

__all__ = ["Registry", "UnknownType"]

T = TypeVar("T")


class UnknownType(LookupError):
    """A ``type`` string that no implementation registered.

    :param kind: the registry kind, e.g. ``"auth"``.
    :param name: the unknown type string.
    :param choices: the registered type strings.
    """

    def __init__(self, kind: str, name: str, choices: tuple[str, ...]) -> None:
        self.kind = kind
        self.name = name
        self.choices = choices
        self.suggestion: str | None = next(
            iter(difflib.get_close_matches(name, choices, n=1, cutoff=0.6)), None
        )
        expected = ", ".join(choices) if choices else "(none registered)"
        message = f"unknown {kind} type {name!r}; expected one of: {expected}"
        if self.suggestion is not None:
            message += f" (did you mean {self.suggestion!r}?)"
        super().__init__(message)

    def __str__(self) -> str:
        return str(self.args[0])


class Registry(Generic[T]):
    """Maps ``type`` strings to implementations of one kind.

    :param kind: the kind name used in error messages (``"auth"``, ``"policy"``, ``"sink"``).
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Return a decorator that registers its argument under ``name``.

        :param name: the ``type`` string used in profiles.
        :raises ValueError: if ``name`` is already registered.
        """

        def decorator(item: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} type {name!r} is already registered")
            self._items[name] = item
            return item

        return decorator

    def get(self, name: str) -> T:
        """Return the implementation registered under ``name``.

        :raises UnknownType: if nothing is registered under ``name``.
        """
        try:
            return self._items[name]
        except KeyError:
            raise UnknownType(self.kind, name, self.names()) from None

    def names(self) -> tuple[str, ...]:
        """Return the registered type strings, sorted."""
        return tuple(sorted(self._items))

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)
