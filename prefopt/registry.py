"""Registries by name: which objectives (or evaluators) exist, under which name.

One :class:`Registry` per family (``prefopt.objectives.registry``,
``prefopt.evaluation.registry``). ``@registry.register("name")`` on a class makes it available and
gives it its ``name``: its one identity, used by its config file, TensorBoard's HParams,
``status.json`` and ``prefopt-report``. The built-in members are the modules of the family's
package: they are imported (and so registered) the first time the registry is asked for names, so
adding one is adding a file, never editing a list.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Collection
from typing import Any, Generic, TypeVar

T = TypeVar("T", bound=type)


class UnknownNameError(KeyError):
    """A name nobody registered (the message lists the available ones)."""

    def __str__(self) -> str:
        return str(self.args[0])


def path_of(cls: type) -> str:
    """``module.QualName`` of a class: what a config's ``_target_`` names."""
    return f"{cls.__module__}.{cls.__qualname__}"


class Registry(Generic[T]):
    """The members of one family.

    Args:
        kind: what a member is, for messages (``objective``).
        package: the package whose modules are the built-in members.
        not_members: modules of that package that register nothing (``base``, ``registry``...).
        error: the :class:`UnknownNameError` subclass raised for an unknown name.
    """

    def __init__(
        self,
        kind: str,
        package: str,
        not_members: Collection[str],
        error: type[UnknownNameError] = UnknownNameError,
    ) -> None:
        self.kind, self.package = kind, package
        self.not_members, self.error = set(not_members), error
        self.entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Class decorator: make a class available under ``name`` (and set its ``name``)."""

        def wrap(cls: T) -> T:
            known = self.entries.get(name)
            if known is not None and path_of(known) != path_of(cls):
                raise ValueError(f"{self.kind} {name!r} is already registered by {path_of(known)}")
            cls.name = name
            self.entries[name] = cls
            return cls

        return wrap

    def load_builtin(self) -> None:
        """Import every module of the package (each registers what it defines)."""
        package = importlib.import_module(self.package)
        for module in pkgutil.iter_modules(package.__path__):
            if module.name not in self.not_members and not module.name.startswith("_"):
                importlib.import_module(f"{self.package}.{module.name}")

    def available(self) -> list[str]:
        """Sorted names of all members (the built-in ones and any imported since)."""
        self.load_builtin()
        return sorted(self.entries)

    def get(self, name: str) -> T:
        """The class registered as ``name``.

        Raises:
            UnknownNameError: (a KeyError) one line naming the unknown name and the available.
        """
        if name not in self.entries:
            self.load_builtin()
        try:
            return self.entries[name]
        except KeyError:
            raise self.error(
                f"unknown {self.kind} {name!r}; available: {', '.join(self.available())}"
            ) from None

    def build(self, name: str, **kwargs: Any) -> Any:
        """An instance of the class registered as ``name``."""
        return self.get(name)(**kwargs)

    def name_of_target(self, target: str) -> str | None:
        """The registered name of the class a ``_target_`` points at (``None`` if that class is
        not a member or cannot be imported)."""
        self.load_builtin()
        for name, cls in self.entries.items():
            if path_of(cls) == target:
                return name
        module, _, attr = target.rpartition(".")
        try:
            cls = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError, ValueError):
            return None
        name = getattr(cls, "name", None)
        return name if name in self.entries and self.entries[name] is cls else None
