"""One small registry type, reused by models, datasets and attacks (timm-style register/create/list), and the
one place that parses name families such as ``timm:resnet18``, ``foolbox:LinfPGD`` or ``npz:PATH``.

A family is registered by the package that implements it (``timm:`` by the model factory, ``foolbox:`` by the
foolbox bridge, ``npz:`` and ``folder:`` by the dataset sources); :func:`split_name` is the only parser.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Callable, Generic, Iterator, TypeVar

from advkit.errors import AdvkitError

T = TypeVar("T")


class Registry(Generic[T]):
    """Name -> entry. Duplicate names raise; unknown names raise with the valid names and a suggestion.

    Args:
        kind: what the entries are (``model``, ``dataset``), for the messages.
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str | None = None) -> Callable[[T], T]:
        """Decorator: :meth:`add` the decorated object under ``name``.

        Args:
            name: the entry's name; default the object's ``__name__``.

        Returns:
            A decorator that registers its argument and returns it unchanged.
        """

        def deco(obj: T) -> T:
            # getattr: T is any registrable object, so the type checker cannot know it has a __name__
            self.add(name or getattr(obj, "__name__"), obj)  # noqa: B009
            return obj

        return deco

    def add(self, name: str, obj: T) -> None:
        """Register ``obj`` under ``name``.

        Args:
            name: the entry's name.
            obj: the entry.

        Raises:
            KeyError: ``name`` is already registered (a programming error, not a user's).
        """
        if name in self._entries:
            raise KeyError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = obj

    def get(self, name: str) -> T:
        """The entry named ``name``.

        Args:
            name: the entry's name.

        Returns:
            The entry.

        Raises:
            AdvkitError: no such entry (the message lists the valid names and the closest one).
        """
        try:
            return self._entries[name]
        except KeyError:
            raise AdvkitError(self.unknown_message(name)) from None

    def unknown_message(self, name: str, extra: list[str] | None = None) -> str:
        """The one-line error for an unknown ``name``: the closest valid name, then all of them.

        Args:
            name: the name asked for.
            extra: more valid names to list after the entries (e.g. ``npz:PATH``).

        Returns:
            The message.
        """
        valid = sorted(self._entries) + (extra or [])
        close = difflib.get_close_matches(name, valid, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"unknown {self.kind} {name!r}{hint}; valid: {', '.join(valid)}"

    def names(self) -> list[str]:
        """The entries' names, sorted."""
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


# what a family prefix looks like: "timm", "foolbox", "npz"; a one-letter head ("C:") is a drive, not a family
_FAMILY_HEAD = re.compile(r"[a-z][a-z0-9_-]+")
_KIND_PLURAL = {"model": "models", "dataset": "datasets", "attack": "attacks"}


@dataclass(frozen=True)
class Family:
    """A name family: ``<name>:<rest>`` names a ``kind`` of thing (``model``, ``dataset``, ``attack``).

    ``str(family)`` is the prefix with its colon (``"foolbox:"``); ``family.join(rest)`` builds a full name.
    """

    name: str
    kind: str
    help: str = ""

    def __str__(self) -> str:
        return f"{self.name}:"

    def join(self, rest: str) -> str:
        """The full name of ``rest`` in this family.

        Args:
            rest: what follows the colon (``LinfPGD``).

        Returns:
            The full name (``foolbox:LinfPGD``).
        """
        return f"{self.name}:{rest}"


_FAMILIES: dict[str, Family] = {}


def register_family(name: str, kind: str, help: str = "") -> Family:
    """Declare the family ``name:`` for things of ``kind``; called once by the module that implements it.

    Args:
        name: the prefix without its colon, lower case (``timm``).
        kind: what the names denote: ``model``, ``dataset`` or ``attack``.
        help: what follows the colon, for listings (``PATH``, ``NAME``).

    Returns:
        The :class:`Family`, to keep as the module's one constant for that prefix.

    Raises:
        KeyError: the family is already registered.
        ValueError: ``name`` does not look like a prefix.
    """
    if not _FAMILY_HEAD.fullmatch(name):
        raise ValueError(f"family name {name!r} must be lower case letters, digits, '-' or '_' (2+ characters)")
    if name in _FAMILIES:
        raise KeyError(f"name family {name!r} is already registered")
    fam = Family(name, kind, help)
    _FAMILIES[name] = fam
    return fam


def families(kind: str | None = None) -> list[Family]:
    """The registered families, sorted by name.

    Args:
        kind: only the families of this kind (``model``, ``dataset``, ``attack``); ``None``: all.

    Returns:
        The families.
    """
    return [f for _, f in sorted(_FAMILIES.items()) if kind is None or f.kind == kind]


def split_name(name: str, kind: str | None = None) -> tuple[Family | None, str]:
    """Split ``name`` into its family and the rest: ``"timm:resnet18"`` -> ``(timm, "resnet18")``,
    ``"pgd"`` -> ``(None, "pgd")``. Only the first colon splits, so paths may hold colons.

    Args:
        name: a model, dataset or attack name as a user wrote it.
        kind: the kind of name expected here; a family of another kind is an error.

    Returns:
        ``(family, rest)``, or ``(None, name)`` for a plain name.

    Raises:
        AdvkitError: an unknown ``xyz:`` prefix (the message lists the known ones), a family of another
            kind, or nothing after the colon.
    """
    head, sep, rest = name.partition(":")
    if not sep or not _FAMILY_HEAD.fullmatch(head):
        return None, name
    known = families(kind)
    fam = _FAMILIES.get(head)
    if fam is None:
        what = f"{kind} family" if kind else "name family"
        close = difflib.get_close_matches(head, [f.name for f in known], n=1)
        hint = f" (did you mean '{close[0]}:'?)" if close else ""
        raise AdvkitError(f"unknown {what} '{head}:' in {name!r}{hint}; known: "
                          f"{', '.join(str(f) for f in known) or 'none'}")
    if kind is not None and fam.kind != kind:
        raise AdvkitError(f"{name!r}: '{fam}' names {_KIND_PLURAL.get(fam.kind, fam.kind)}, not "
                          f"{_KIND_PLURAL.get(kind, kind)}; {kind} families: "
                          f"{', '.join(str(f) for f in known) or 'none'}")
    if not rest:
        raise AdvkitError(f"{name!r} needs a {(fam.help or 'name').lower()} after '{fam}'")
    return fam, rest
