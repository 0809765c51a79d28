"""README and docs cannot drift: their commands parse, their Python names exist, their
test command is CI's, and they point at nothing outside the repository."""

from __future__ import annotations

import ast
import re
import shlex
from pathlib import Path

import pytest

import xctdask as xd
from xctdask.cli import _parser

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
DOCS = {p.name: p.read_text() for p in sorted((ROOT / "docs").glob("*.md"))}


def _blocks(text: str, language: str) -> list[str]:
    return [
        "\n".join(line[2:] if line.startswith("  ") else line for line in block.splitlines())
        for block in re.findall(rf"```{language}\n(.*?)```", text, flags=re.S)
    ]


@pytest.mark.parametrize("name", ["README.md", *DOCS])
def test_no_path_outside_the_repository(name):
    text = README if name == "README.md" else DOCS[name]
    assert "../" not in text, "users have no folder beside the repository"


def test_the_test_command_is_what_ci_runs():
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert ci in README


def _cli_lines(text: str) -> list[str]:
    lines = []
    for block in _blocks(text, "bash"):
        joined = block.replace("\\\n", " ")
        for line in joined.splitlines():
            line = line.split("  #")[0].strip()
            for part in line.split("&&"):
                part = part.strip()
                if part.startswith("xctdask "):
                    lines.append(part)
    return lines


@pytest.mark.parametrize(
    "line", _cli_lines(README) + [x for d in DOCS.values() for x in _cli_lines(d)]
)
def test_every_cli_example_parses(line):
    # "[--a x | --b y]" shows alternatives: each alternative is checked
    words = shlex.split(re.sub(r"[\[\]]", " ", line.split("|")[0]))[1:]
    try:
        _parser().parse_args(words)
    except SystemExit as stop:  # --version and --help exit, successfully
        assert stop.code == 0, line


def _python_blocks() -> list[str]:
    blocks = _blocks(README, "python")
    for text in DOCS.values():
        blocks += _blocks(text, "python")
    return blocks


@pytest.mark.parametrize("block", _python_blocks())
def test_every_python_example_is_valid_and_names_what_exists(block):
    tree = ast.parse(block)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if node.value.id == "xd":
                assert hasattr(xd, node.attr), f"xd.{node.attr}"
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Attribute)
            and isinstance(node.value.value, ast.Name)
            and node.value.value.id == "xd"
        ):
            module = getattr(xd, node.value.attr)
            assert hasattr(module, node.attr), f"xd.{node.value.attr}.{node.attr}"


def test_the_presets_table_lists_every_preset():
    for name in xd.presets.PRESETS:
        short = name.replace("modular-unet-2.5d", "-2.5d").replace("modular-unet-3d", "-3d")
        assert f"`{name}`" in README or f"`{short}`" in README, name
