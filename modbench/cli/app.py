"""The ``modbench`` command line. Commands stay thin: parse, resolve through registries, call the library.

User mistakes (unknown names, bad values, bad flags) print one line and exit with code 2.
"""

from __future__ import annotations

import sys

import typer

from modbench.errors import TrainingFailed, UserError

try:  # typer >= 0.2x vendors click; older versions raise click's own exceptions
    from typer import TyperException as CliException
except ImportError:  # pragma: no cover
    from click import ClickException as CliException

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Circuit-discovery benchmark for modular training.")


def _register_commands() -> None:
    from modbench.cli import clusterability, leaderboard, listing, run, sweep, train  # noqa: F401  (commands attach)


def fail(message: str, code: int = 2) -> None:
    print(f"modbench: error: {message}", file=sys.stderr)
    raise SystemExit(code)


def main(argv: list[str] | None = None) -> None:
    _register_commands()
    try:
        app(args=argv, standalone_mode=False, prog_name="modbench")
    except UserError as error:
        fail(str(error))
    except TrainingFailed as error:
        fail(str(error), 1)
    except typer.Abort:
        fail("aborted", 130)
    except CliException as error:
        if type(error).__name__ == "NoArgsIsHelpError":  # help was printed
            raise SystemExit(0) from None
        fail(" ".join(error.format_message().split()), getattr(error, "exit_code", 2) or 2)
