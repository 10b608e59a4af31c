"""What an installed copy holds: every package of the wheel is in the image, and bench fails clearly."""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from memsaga.cli import app
from memsaga.cli.bench import missing_benchmarks

ROOT = Path(__file__).resolve().parents[2]


def wheel_packages() -> list[str]:
    """Top-level packages of ``[tool.setuptools.packages.find]`` (``name*`` patterns)."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    return [pattern.rstrip("*") for pattern in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]]


def test_the_image_copies_every_package_of_the_wheel() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    for package in wheel_packages():
        assert f"COPY {package} ./{package}\n" in dockerfile, package


def test_bench_without_the_benchmarks_says_it_needs_a_checkout(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "bench.cli", None)  # as if bench/ were not installed

    result = CliRunner().invoke(app, ["bench", "--quick", "--out", str(tmp_path)])

    assert result.exit_code == 3  # configuration: the install lacks the benchmarks
    assert "source checkout" in result.output and "Traceback" not in result.output


def test_bench_without_its_extra_says_what_to_install() -> None:
    message = missing_benchmarks(ModuleNotFoundError("No module named 'matplotlib'", name="matplotlib"))

    assert "matplotlib is not installed" in message and "memsaga[bench]" in message
