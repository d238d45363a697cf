"""One small registry type, reused by models, datasets and attacks (timm-style register/create/list)."""

from __future__ import annotations

import difflib
from typing import Callable, Generic, Iterator, TypeVar

from advkit.errors import AdvkitError

T = TypeVar("T")


class Registry(Generic[T]):
    """Name -> entry. Duplicate names raise; unknown names raise with the valid names and a suggestion."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str | None = None) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            self.add(name or getattr(obj, "__name__"), obj)
            return obj

        return deco

    def add(self, name: str, obj: T) -> None:
        if name in self._entries:
            raise KeyError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = obj

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            raise AdvkitError(self.unknown_message(name)) from None

    def unknown_message(self, name: str, extra: list[str] | None = None) -> str:
        valid = sorted(self._entries) + (extra or [])
        close = difflib.get_close_matches(name, valid, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"unknown {self.kind} {name!r}{hint}; valid: {', '.join(valid)}"

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
