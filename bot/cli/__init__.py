"""The ``lemi`` command line: a thin shell over the same core the App uses.

Exit codes: 0 success, 1 validation or operation failure, 2 usage error.
Errors are printed as readable messages; a traceback only with LEMI_DEBUG=1.
"""

from __future__ import annotations

import os
import sys

import click
from botocore.exceptions import BotoCoreError, ClientError
from gidgethub import HTTPException as GitHubHTTPException

from bot.aws.errors import OperationError
from bot.aws.errors import describe as describe_aws_error
from bot.cli import aws_cmds, files, github_cmds, server  # noqa: F401  (register commands)
from bot.cli.base import LemiError, cli
from bot.core.problems import Invalid
from bot.github.client import error_message

__all__ = ["cli", "main"]


def main(argv: list[str] | None = None) -> int:
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
    except OperationError as exc:
        click.echo(f"error: {exc}", err=True)
        return 1
    except GitHubHTTPException as exc:
        click.echo(f"error: GitHub answered {int(exc.status_code)}: {error_message(exc)}", err=True)
        return 1
    except (ClientError, BotoCoreError) as exc:
        click.echo(f"error: {describe_aws_error(exc)}", err=True)
        return 1
    except LemiError as exc:
        click.echo(f"error: {exc}", err=True)
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # never a traceback for a user
        if os.environ.get("LEMI_DEBUG"):
            raise
        click.echo(
            f"lemi: internal error: {type(exc).__name__}: {exc}\n"
            "    this is a bug in lemi; run again with LEMI_DEBUG=1 for details and report it",
            err=True,
        )
        return 1


def entrypoint() -> None:  # pragma: no cover
    sys.exit(main())
