"""Tracing fixtures: ``recorder``, a tracer and the spans it recorded (``spankit``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from spankit import Recorder


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    rec = Recorder()
    yield rec
    rec.provider.shutdown()
