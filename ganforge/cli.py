"""The `ganforge` command: the app, its command table and the entry point. The commands live in
commands_*.py by group; the CLI owns run folders, printing and exit codes; torch loads lazily."""

from __future__ import annotations

import signal
import sys

import typer

from ganforge import commands_data, commands_interop, commands_model, commands_runs, commands_train, help_examples
from ganforge.commands_common import err

app = typer.Typer(
    name="ganforge",
    help="Train generative adversarial networks from YAML configs, on a GPU or the CPU.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

# Every command, in the order `ganforge --help` lists them; each module says what its group is.
COMMANDS = {
    "train": commands_train.train,
    "sample": commands_model.sample,
    "interpolate": commands_model.interpolate,
    "export": commands_model.export,
    "import": commands_interop.import_command,
    "eval": commands_runs.evaluate,
    "info": commands_runs.info,
    "runs": commands_runs.runs,
    "report": commands_runs.report,
    "config": commands_train.show_config,
    "list": commands_train.list_components,
    "dataset": commands_data.dataset_command,
    "eval-images": commands_data.eval_images,
    "project": commands_model.project_command,
}
for name, command in COMMANDS.items():
    app.command(name, epilog=help_examples.epilog(name))(command)


def _print_version(value: bool) -> None:
    if value:
        from ganforge.about import __version__

        typer.echo(f"ganforge {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    # An option callback runs while parsing, before click asks for a command (a plain parameter
    # would leave `ganforge --version` a "Missing command" error).
    version: bool = typer.Option(False, "--version", help="Print the version and exit.", is_eager=True,
                                 callback=_print_version),
) -> None:
    pass


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the process stands, as Ctrl+C is: `finally` blocks run (temporary
    files removed, locks released) and every command stops as it does on Ctrl+C."""


def main() -> None:
    """Entry point of the `ganforge` console script (and of `python -m ganforge`)."""
    terminated = []

    def terminate(signum: int, frame: object) -> None:
        terminated.append(signum)
        raise Terminated

    signal.signal(signal.SIGTERM, terminate)
    try:
        code = app(prog_name="ganforge", standalone_mode=False)
    except typer.Abort:
        err("aborted")
        sys.exit(130)
    except Exception as e:
        # Click's usage errors (an unknown option, a value of the wrong type): one line, like
        # every other mistake, instead of a usage box.
        if not hasattr(e, "format_message") or getattr(e, "exit_code", None) != 2:
            raise
        message = " ".join(e.format_message().split())
        if message:  # empty: no arguments at all, and the help was printed
            command = getattr(getattr(e, "ctx", None), "command_path", None) or "ganforge"
            err(f"error: {message} (see {command} --help)")
        sys.exit(2)
    if terminated and code == 130:  # typer turns the interrupt into exit code 130
        err("terminated (SIGTERM)")
        sys.exit(128 + signal.SIGTERM)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
    sys.exit(0)

