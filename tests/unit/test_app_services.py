"""The typed application state: one object per type and app, read back with its type checked."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from fastapi import FastAPI

from shared.web import AppServices


@dataclass(frozen=True)
class Writes:
    name: str


@dataclass(frozen=True)
class Reads:
    name: str


def test_an_app_hands_back_the_container_it_was_given() -> None:
    app = FastAPI()
    writes = Writes("w")
    AppServices(Writes).install(app, writes)
    assert AppServices(Writes).of(app) is writes


def test_an_app_without_its_container_is_an_error_naming_it() -> None:
    with pytest.raises(RuntimeError, match="Writes"):
        AppServices(Writes).of(FastAPI())


def test_another_kind_of_container_is_not_read_as_this_one() -> None:
    app = FastAPI()
    AppServices(Reads).install(app, Reads("r"))
    with pytest.raises(RuntimeError, match="Writes"):
        AppServices(Writes).of(app)


def test_objects_of_different_types_live_side_by_side_on_one_app() -> None:
    app = FastAPI()
    reads, writes = Reads("r"), Writes("w")
    AppServices(Reads).install(app, reads)
    AppServices(Writes).install(app, writes)
    assert AppServices(Reads).of(app) is reads
    assert AppServices(Writes).of(app) is writes
