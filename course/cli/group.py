"""The ``course`` click group and ``main``, its entry point: exit status 0 ok, 1 a check
failed, 2 usage error; errors a user can cause print one line, never a traceback.

The commands live one noun to a module beside this one and register on ``cli`` when
``course.cli`` imports them."""

from __future__ import annotations

import click

from course.cli.context import Context
from course.mail.render import RenderError
from course.schedule import ScheduleError
from course.settings import Settings, SettingsError
from course.startup import dev_warning, refuse_reserved_sender, require_schedule_file
from course.store import DuplicateSubscriber, LayoutMismatch, StoreError
from course.store.embedded import EmbeddedRedisError
from course.subscribers.lifecycle import SubscriptionError

# Errors a user can cause: reported as one line, never a traceback.
USER_ERRORS = (
    ScheduleError,
    RenderError,
    SettingsError,
    SubscriptionError,
    DuplicateSubscriber,
    EmbeddedRedisError,
)

# The commands that start a site: they need the schedule file, and a dev-mode warning is
# said once, as they start, rather than on every command.
LONG_RUNNING = ("run", "serve")
# Commands that read the settings themselves: ``doctor`` lists every fault the production
# guard would refuse, so the group must not stop at the first.
READS_OWN_SETTINGS = ("doctor",)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="healing-roadmap-course")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """The Fibromyalgia Healing Roadmap email course."""
    if ctx.invoked_subcommand in READS_OWN_SETTINGS:
        return
    settings = Settings.from_env()
    if ctx.invoked_subcommand in LONG_RUNNING:
        require_schedule_file(settings)
        refuse_reserved_sender(settings)
        if warning := dev_warning(settings):
            click.echo(f"course: {warning}", err=True)
    ctx.obj = Context(settings)


def main(argv: list[str] | None = None) -> None:
    """The console script: run the group on ``argv``, then exit with the status it earned."""
    try:
        cli.main(args=argv, prog_name="course", standalone_mode=False)
    except click.exceptions.Exit as exc:
        raise SystemExit(exc.exit_code) from None
    except click.Abort:
        click.echo("course: aborted", err=True)
        raise SystemExit(130) from None
    except click.ClickException as exc:
        exc.show()
        raise SystemExit(exc.exit_code) from None
    except (SettingsError, LayoutMismatch) as exc:
        click.echo(f"course: {exc}", err=True)
        raise SystemExit(2) from None
    except USER_ERRORS as exc:
        for line in str(exc).splitlines() or [type(exc).__name__]:
            click.echo(f"course: {line}" if not line.startswith(("/", ".")) else line, err=True)
        raise SystemExit(1) from None
    except StoreError as exc:
        click.echo(f"course: Redis: {exc}", err=True)
        raise SystemExit(1) from None
    except OSError as exc:
        click.echo(f"course: {exc}", err=True)
        raise SystemExit(1) from None
    raise SystemExit(0)
