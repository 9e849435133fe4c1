"""``keep_freed_memory``: glibc's malloc thresholds raised once per process (the page faults of each request's
full-size buffers), and nothing done where there is no glibc."""

from __future__ import annotations

import platform

import pytest

from cxrtriage import memory


def test_thresholds_are_set_on_glibc_linux_and_only_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory, "_done", None)
    calls = []
    real = memory._set_thresholds
    monkeypatch.setattr(memory, "_set_thresholds", lambda: calls.append(1) or real())
    expected = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
    assert memory.keep_freed_memory() is expected
    assert memory.keep_freed_memory() is expected
    assert calls == [1]


def test_no_glibc_no_change(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory, "_done", None)
    monkeypatch.setattr(memory.platform, "system", lambda: "Darwin")
    assert memory.keep_freed_memory() is False


def test_the_engine_sets_them(monkeypatch: pytest.MonkeyPatch) -> None:
    """Building a Triage engine is what raises them: every entry point (CLI, service, batch) builds one."""
    from cxrtriage.pipeline import Triage

    seen = []
    monkeypatch.setattr("cxrtriage.pipeline.keep_freed_memory", lambda: seen.append(1) or True)
    Triage(segmenter=None)
    assert seen == [1]
