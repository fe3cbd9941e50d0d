"""The ``lemi`` command line: a thin shell over the same core the App uses.

Exit codes: 0 success, 1 validation or operation failure (a ``UserError``, or a
``Transient`` one: GitHub or AWS could not answer now), 2 usage error. Errors are
printed as readable messages (with ``--output json``, as a JSON document on stdout:
bot/cli/failures.py); a network failure names the host; anything else is a bug in lemi,
said so, with a traceback only with LEMI_DEBUG=1.
"""

from __future__ import annotations

import logging
import os
import sys

import click

from bot.cli import aws_cmds, config_cmds, doctor_cmd, failures, files, github_cmds, logs_cmds, server, task_cmds  # noqa: F401  (register commands)
from bot.cli.base import cli
from bot.core.errors import Transient, UserError
from bot.core.problems import Invalid

__all__ = ["cli", "main"]


def main(argv: list[str] | None = None) -> int:
    # botocore's credential refresh logs its failure with a traceback; lemi reports the failure itself
    logging.getLogger("aiobotocore.credentials").addHandler(logging.NullHandler())
    try:
        # without standalone mode click returns the code of ctx.exit(n) instead of raising
        code = cli.main(args=argv, prog_name="lemi", standalone_mode=False)
        return code if isinstance(code, int) else 0
    except click.exceptions.Exit as exc:
        return int(exc.exit_code or 0)
    except click.UsageError as exc:
        exc.show()
        return 2
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.Abort:
        click.echo("aborted", err=True)
        return 1
    except Invalid as exc:  # a command that forgot to report its own problems
        click.echo(str(exc), err=True)
        return 1
    except (UserError, Transient) as exc:  # refused (lemi, GitHub, AWS), or could not answer now
        click.echo(failures.describe(exc).text(), err=True)
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if failures.network(exc):  # a network error no adapter translated: which host, not a bug
            click.echo(failures.describe(exc).text(), err=True)
            return 1
        if os.environ.get("LEMI_DEBUG"):
            raise
        click.echo(  # never a traceback for a user
            f"lemi: internal error: {type(exc).__name__}: {exc}\n"
            "    this is a bug in lemi; run again with LEMI_DEBUG=1 for details and report it",
            err=True,
        )
        return 1


def entrypoint() -> None:  # pragma: no cover
    sys.exit(main())
