"""hakv.errors: the wire table fills itself, so every error survives a round trip."""

from __future__ import annotations

import pytest

from hakv import errors
from hakv.errors import ConfigError, FatalError, HakvError, InternalError, StorageFailure


def _subclasses(cls: type[HakvError]) -> list[type[HakvError]]:
    out = []
    for sub in cls.__subclasses__():
        out += [sub, *_subclasses(sub)]
    return out


def _with_own_code() -> list[type[HakvError]]:
    return [c for c in _subclasses(HakvError) if "code" in c.__dict__]


@pytest.mark.parametrize("cls", _with_own_code(), ids=lambda c: c.__name__)
def test_every_error_with_a_code_comes_back_as_itself(cls: type[HakvError]) -> None:
    sent = cls("what went wrong, and what to do", group="g1")
    back = errors.from_wire(sent.to_wire())
    assert type(back) is cls
    assert (back.message, back.details) == (sent.message, {"group": "g1"})
    assert back.retryable is cls.retryable


def test_config_error_is_no_longer_lost_on_the_wire() -> None:
    """It used to come back as InternalError: the hand-written table missed it."""
    assert type(errors.from_wire(ConfigError("bad").to_wire())) is ConfigError


def test_a_second_class_claiming_a_code_fails_at_definition() -> None:
    with pytest.raises(TypeError, match="'conflict' of .*Clash is already used by ConflictError"):
        type("Clash", (errors.PermanentError,), {"code": "conflict"})


def test_an_error_without_its_own_code_travels_as_its_parents() -> None:
    class Late(errors.UnavailableError):
        pass

    assert type(errors.from_wire(Late("x").to_wire())) is errors.UnavailableError


@pytest.mark.parametrize("body", [{}, {"error": "text"}, {"error": {"code": "no_such_code"}},
                                  "not a dict"])
def test_an_unknown_or_malformed_wire_error_is_an_internal_error(body: object) -> None:
    assert isinstance(errors.from_wire(body), InternalError)  # type: ignore[arg-type]


def test_fatal_errors_are_outside_the_wire_tree() -> None:
    assert issubclass(StorageFailure, FatalError)
    assert not issubclass(StorageFailure, HakvError)
