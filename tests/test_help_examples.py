"""Every command's --help ends with 2-3 worked examples, and each example parses with the
command's own options (a renamed flag or a value out of range fails here)."""

from __future__ import annotations

import pytest
import typer.main

from ganforge.cli import COMMANDS, app
from ganforge.help_examples import EXAMPLES, commands


def test_every_command_has_two_or_three_examples():
    assert set(EXAMPLES) == set(COMMANDS)
    for name, examples in EXAMPLES.items():
        assert 2 <= len(examples) <= 3, name
        for command, what in examples:  # a line each in an 80-column terminal (indented 2 and 6)
            assert len(command) <= 76 and len(what) <= 72, command


@pytest.mark.parametrize("name", list(COMMANDS))
def test_the_help_ends_with_the_examples(cli, name):
    text = cli(name, "--help").stdout
    tail = text[text.rindex("Examples:"):]
    for command, what in EXAMPLES[name]:
        assert command in tail and what in tail
    assert "Options" not in tail  # the examples come last


@pytest.mark.parametrize("name", list(COMMANDS))
def test_each_example_parses(name):
    group = typer.main.get_command(app)
    command = group.commands[name]
    for args in commands(name):
        # make_context parses and checks every option and argument (types, ranges, choices)
        # without running the command.
        ctx = command.make_context(name, list(args), parent=None)
        assert ctx.params is not None


def test_the_config_examples_run(cli, tmp_path):
    import json

    assert json.loads(cli("config", "--schema").stdout)["title"] == "ganforge config"
    result = cli("config", "configs/cifar10.yaml", "--set", "train.batch_size=128")
    assert result.exit_code == 0 and "batch_size: 128" in result.stdout
