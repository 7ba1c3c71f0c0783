"""``dataclass`` as the standard library's, with its methods made on first use instead of at import.

On Python 3.11 ``dataclasses.dataclass`` compiles each generated method (``__init__``,
``__repr__``, ``__eq__``, ``__hash__`` and, when frozen, ``__setattr__`` and ``__delattr__``)
from source with its own ``exec`` as the class is defined: ~0.5-0.7 ms per frozen class. Rumor
defines ~100 of them (messages, events, configuration, catalog records), and that was ~75 ms
of the agent's ~0.3 CPU-s start-up (issue 13: start-up <= 0.2 CPU-s), spent on classes most
agents never instantiate.

This decorator takes the same arguments (those Rumor uses) and gives the same class: a real
dataclass (``dataclasses.fields``, ``replace``, ``asdict`` and ``is_dataclass`` work, slots and
``__match_args__`` as asked) with the same behaviour, but

- the field processing and the slots are still the standard library's (``dataclass`` called
  with ``init``, ``repr`` and ``eq`` off, which compiles nothing);
- ``__init__`` is compiled from the same kind of source the first time the class is
  instantiated (a class never instantiated never pays for it); after that it is an ordinary
  generated ``__init__``, as fast as the standard one;
- ``__repr__``, ``__eq__``, ``__hash__``, the frozen ``__setattr__``/``__delattr__`` and the
  frozen slotted class's pickling support are shared functions that read per-class field
  tuples (``operator.attrgetter``), so nothing is compiled for them at all.

What it does not support (a ``TypeError`` at class definition): ``order``, ``unsafe_hash``,
``InitVar`` and ``ClassVar`` fields, and a dataclass base class. Use ``dataclasses.dataclass``
for those. Type checkers see ``dataclasses.dataclass`` itself.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import operator
import reprlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

__all__ = ["dataclass"]


class _Factory:
    def __repr__(self) -> str:
        return "<factory>"


_NO_ARG = _Factory()
"""The default of an ``__init__`` parameter whose field has a ``default_factory`` (shown as
``<factory>`` in signatures, as the standard library's)."""

_MISSING = dataclasses.MISSING


def _tuple_getter(names: tuple[str, ...]) -> Callable[[Any], tuple[Any, ...]]:
    """A function returning the tuple of those attributes (as the generated methods compare)."""
    if len(names) >= 2:
        return operator.attrgetter(*names)
    if len(names) == 1:
        one = operator.attrgetter(names[0])
        return lambda obj: (one(obj),)
    return lambda obj: ()


@reprlib.recursive_repr()
def _repr(self: Any) -> str:
    cls = type(self)
    return cls.__qualname__ + "(" + ", ".join(
        f"{name}={getattr(self, name)!r}" for name in cls._dc_repr_names) + ")"


def _eq(self: Any, other: Any) -> Any:
    if other.__class__ is self.__class__:
        get = self.__class__._dc_eq_get
        return get(self) == get(other)
    return NotImplemented


def _hash(self: Any) -> int:
    return hash(type(self)._dc_hash_get(self))


def _frozen_setattr(self: Any, name: str, value: Any) -> None:
    cls = type(self)
    if "_dc_frozen" in cls.__dict__ or name in cls._dc_field_names:
        raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}")
    object.__setattr__(self, name, value)


def _frozen_delattr(self: Any, name: str) -> None:
    cls = type(self)
    if "_dc_frozen" in cls.__dict__ or name in cls._dc_field_names:
        raise dataclasses.FrozenInstanceError(f"cannot delete field {name!r}")
    object.__delattr__(self, name)


def _getstate(self: Any) -> list[Any]:
    return [getattr(self, name) for name in type(self)._dc_field_names]


def _setstate(self: Any, state: list[Any]) -> None:
    for name, value in zip(type(self)._dc_field_names, state):
        object.__setattr__(self, name, value)


def _compile_init(cls: type, frozen: bool) -> Callable[..., None]:
    """The ``__init__`` the standard library would generate for ``cls``, compiled once."""
    params: list[str] = []
    kw_params: list[str] = []
    body: list[str] = []
    env: dict[str, Any] = {"_NO_ARG": _NO_ARG, "_setattr": object.__setattr__}
    annotations: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        name = f.name
        has_factory = f.default_factory is not _MISSING
        if has_factory:
            env[f"_factory_{name}"] = f.default_factory
        if f.init:
            annotations[name] = f.type
            if has_factory:
                param = f"{name}=_NO_ARG"
                value = f"_factory_{name}() if {name} is _NO_ARG else {name}"
            elif f.default is not _MISSING:
                env[f"_default_{name}"] = f.default
                param = f"{name}=_default_{name}"
                value = name
            else:
                param = name
                value = name
            (kw_params if f.kw_only else params).append(param)
        elif has_factory:
            value = f"_factory_{name}()"
        elif f.default is not _MISSING:
            env[f"_default_{name}"] = f.default
            value = f"_default_{name}"
        else:
            continue
        body.append(f"  _setattr(self, {name!r}, {value})" if frozen
                    else f"  self.{name} = {value}")
    if hasattr(cls, "__post_init__"):
        body.append("  self.__post_init__()")
    signature = ["self", *params]
    if kw_params:
        signature += ["*", *kw_params]
    source = f"def __init__({', '.join(signature)}):\n" + ("\n".join(body) or "  pass") + "\n"
    exec(source, env)  # noqa: S102 - our own generated source, as dataclasses does
    init: Callable[..., None] = env["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__module__ = cls.__module__
    annotations["return"] = None
    init.__annotations__ = annotations
    return init


def _lazy_init(self: Any, *args: Any, **kwargs: Any) -> None:
    """The first instantiation of a class: compile its real ``__init__``, install it, use it."""
    owner = next(c for c in type(self).__mro__ if "_dc_field_names" in c.__dict__)
    init = owner.__dict__["__init__"]
    if init is _lazy_init:
        init = _compile_init(owner, "_dc_frozen" in owner.__dict__)
        owner.__init__ = init  # type: ignore[misc]
    init(self, *args, **kwargs)


def _signature_doc(name: str, fields: tuple[dataclasses.Field[Any], ...], init: bool) -> str:
    """The docstring the standard library gives an undocumented dataclass: its signature."""
    if not init:
        return f"{name}()"
    parts: list[str] = []
    starred = False
    for f in fields:
        if not f.init:
            continue
        if f.kw_only and not starred:
            parts.append("*")
            starred = True
        part = f"{f.name}: {inspect.formatannotation(f.type)}"
        if f.default_factory is not _MISSING:
            part += " = <factory>"
        elif f.default is not _MISSING:
            part += f" = {f.default!r}"
        parts.append(part)
    return f"{name}({', '.join(parts)})"


def _check_defaults(qualname: str, fields: tuple[dataclasses.Field[Any], ...]) -> None:
    """The standard library's check, made at definition as it does (the compile is later)."""
    seen_default = False
    for f in fields:
        if not f.init or f.kw_only:
            continue
        if f.default is not _MISSING or f.default_factory is not _MISSING:
            seen_default = True
        elif seen_default:
            raise TypeError(f"{qualname}: non-default argument {f.name!r} follows default "
                            "argument")


def _process(cls: type, *, init: bool, repr: bool, eq: bool, frozen: bool,
             slots: bool, kw_only: bool, match_args: bool) -> type:
    own = cls.__dict__
    if any(dataclasses.is_dataclass(base) for base in cls.__mro__[1:]):
        raise TypeError(f"{cls.__qualname__}: gossip.dclass does not derive from a dataclass; "
                        "use dataclasses.dataclass")
    if frozen and ("__setattr__" in own or "__delattr__" in own):
        raise TypeError(f"Cannot overwrite attribute __setattr__ or __delattr__ in class "
                        f"{cls.__name__}")
    explicit_hash = "__hash__" in own and own["__hash__"] is not None
    documented = bool(cls.__doc__)
    if not documented:
        cls.__doc__ = "-"  # written below, without the standard library's inspect.signature
    cls = dataclasses.dataclass(cls, init=False, repr=False, eq=False, frozen=False,
                                slots=slots, kw_only=kw_only, match_args=match_args)
    every = cls.__dict__["__dataclass_fields__"]
    fields = dataclasses.fields(cls)
    if len(every) != len(fields):
        raise TypeError(f"{cls.__qualname__}: gossip.dclass supports no InitVar or ClassVar "
                        "fields; use dataclasses.dataclass")
    if not documented:
        cls.__doc__ = _signature_doc(cls.__name__, fields, init)
    params = copy.copy(cls.__dict__["__dataclass_params__"])
    params.init, params.repr, params.eq, params.frozen = init, repr, eq, frozen
    cls.__dataclass_params__ = params  # type: ignore[attr-defined]
    cls._dc_field_names = tuple(f.name for f in fields)  # type: ignore[attr-defined]
    if init and "__init__" not in own:
        _check_defaults(cls.__qualname__, fields)
        cls.__init__ = _lazy_init  # type: ignore[misc]
    if repr and "__repr__" not in own:
        cls._dc_repr_names = tuple(f.name for f in fields if f.repr)  # type: ignore[attr-defined]
        cls.__repr__ = _repr  # type: ignore[assignment]
    if eq and "__eq__" not in own:
        cls._dc_eq_get = staticmethod(  # type: ignore[attr-defined]
            _tuple_getter(tuple(f.name for f in fields if f.compare)))
        cls.__eq__ = _eq  # type: ignore[assignment]
    if eq and not explicit_hash:
        if frozen:
            cls._dc_hash_get = staticmethod(_tuple_getter(tuple(  # type: ignore[attr-defined]
                f.name for f in fields if (f.compare if f.hash is None else f.hash))))
            cls.__hash__ = _hash  # type: ignore[assignment]
        else:
            cls.__hash__ = None  # type: ignore[assignment]
    if frozen:
        cls._dc_frozen = True  # type: ignore[attr-defined]
        cls.__setattr__ = _frozen_setattr  # type: ignore[assignment]
        cls.__delattr__ = _frozen_delattr  # type: ignore[assignment]
        if slots:
            cls.__getstate__ = _getstate  # type: ignore[method-assign,assignment]
            cls.__setstate__ = _setstate  # type: ignore[attr-defined]
    return cls


if TYPE_CHECKING:
    from dataclasses import dataclass
else:
    def dataclass(cls=None, /, *, init=True, repr=True, eq=True, order=False,
                  unsafe_hash=False, frozen=False, match_args=True, kw_only=False,
                  slots=False):
        """``dataclasses.dataclass`` with its methods made lazily (see the module docstring)."""
        if order or unsafe_hash:
            raise TypeError("gossip.dclass supports neither order nor unsafe_hash; "
                            "use dataclasses.dataclass")

        def wrap(c):
            return _process(c, init=init, repr=repr, eq=eq, frozen=frozen, slots=slots,
                            kw_only=kw_only, match_args=match_args)

        return wrap if cls is None else wrap(cls)
