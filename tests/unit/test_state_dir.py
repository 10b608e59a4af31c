"""The local stack is found from any folder below the one that holds its ``.memsaga``."""

from __future__ import annotations

from pathlib import Path

import pytest

from memsaga.settings import Settings, find_state_dir


def test_the_nearest_state_dir_above_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".memsaga").mkdir()
    (tmp_path / "docs" / "deep" / ".memsaga").mkdir(parents=True)
    (tmp_path / "docs" / "deep" / "er").mkdir()
    monkeypatch.delenv("MEMSAGA_STATE_DIR", raising=False)

    monkeypatch.chdir(tmp_path / "docs")
    assert Settings().state_dir == (tmp_path / ".memsaga").resolve()
    assert (
        find_state_dir(tmp_path / "docs" / "deep" / "er")
        == (tmp_path / "docs" / "deep" / ".memsaga").resolve()
    )


def test_without_one_it_is_created_here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MEMSAGA_STATE_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    assert find_state_dir() == Path(".memsaga")


def test_the_variable_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".memsaga").mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MEMSAGA_STATE_DIR", str(tmp_path / "elsewhere"))
    assert Settings().state_dir == tmp_path / "elsewhere"
