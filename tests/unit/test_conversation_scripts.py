"""Conversation scripts (`kefu demo --file`, tests/conversations): what a bad file is told."""

from __future__ import annotations

from pathlib import Path

import pytest

from kefu.commands.conversation import ScriptError, load_scripts

SCRIPT = """conversations:
  - id: phone
    user: u1001
    language: zh
    turns:
      - say: {say}
        expect: ask
"""


@pytest.mark.parametrize(
    ("say", "read_as"), [("13912345678", "int 13912345678"), ("yes", "bool True")]
)
def test_a_message_yaml_reads_as_a_number_or_boolean_is_named(
    tmp_path: Path, say: str, read_as: str
) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(SCRIPT.format(say=say), encoding="utf-8")
    with pytest.raises(ScriptError, match=f"turn 1: YAML read 'say' as the {read_as}: quote"):
        load_scripts(path)


def test_the_repositorys_scripts_load() -> None:
    scripts = [
        s
        for p in sorted((Path(__file__).parents[1] / "conversations").glob("*.yaml"))
        for s in load_scripts(p)
    ]
    assert len({s.id for s in scripts}) == len(scripts) > 100
