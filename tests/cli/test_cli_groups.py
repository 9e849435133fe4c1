"""The CLI's layout: every subcommand belongs to one command group module, and ``cli/main.py``'s docstring, the
list a reader starts from, names each of them (it once listed 15 of 20)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from cxrtriage.cli import main as cli_main


def _subcommands(parser: argparse.ArgumentParser) -> list[str]:
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return list(action.choices)


def _registered(register: Callable[[Any], None]) -> list[str]:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    return _subcommands(parser)


def test_each_subcommand_has_one_group() -> None:
    """``cxrtriage``'s subcommands are exactly those its groups register, each by one group (none added in main)."""
    names = [name for group in cli_main.GROUPS for name in _registered(group.add_parser)]
    assert len(names) == len(set(names)), names
    assert sorted(names) == sorted(_subcommands(cli_main.build_parser()))


def test_main_docstring_names_every_subcommand() -> None:
    doc = cli_main.__doc__ or ""
    names = {name for group in cli_main.GROUPS for name in _registered(group.add_parser)}
    missing = sorted(name for name in names if f"``{name}" not in doc)
    assert not missing, f"cli/main.py's docstring does not name: {missing}"


def test_every_group_module_is_named_in_the_docstring() -> None:
    doc = cli_main.__doc__ or ""
    missing = [g.__name__ for g in cli_main.GROUPS if f":mod:`{g.__name__}`" not in doc]
    assert not missing, missing
