"""``course subscribers export-data`` and ``course subscribers erase``: a person's access
and erasure requests (GDPR)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from course.cli.context import Context, Failed, console, err_console, pass_ctx
from course.cli.subscribers import subscribers
from course.clock import utc_now


def _address(value: str) -> str:
    """Normalised as signups and imports store it (a punycode domain matches its Unicode form)."""
    from course.subscribers.lifecycle import SubscriptionError
    from course.subscribers.signup import check_email

    try:
        return check_email(value)
    except SubscriptionError:
        raise click.BadParameter(f"not an email address: {value!r}", param_hint="ADDRESS") from None


@subscribers.command("export-data")
@click.argument("address")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Write the JSON here instead of standard output.")  # fmt: skip
@click.option("--scan", is_flag=True, help="Also read every record (finds records made "
              "before re-signups were linked; slow on a large list).")  # fmt: skip
@pass_ctx
def subscribers_export_data(ctx: Context, address: str, out: Path | None, scan: bool) -> None:
    """Everything held about ADDRESS, as JSON (GDPR access request)."""
    from course.subscribers.privacy import export_data

    address = _address(address)
    data = export_data(ctx.runtime.store, address, utc_now(), scan=scan)
    if data is None:
        erased = ctx.runtime.store.is_erased(address)
        raise Failed(f"no data held for {address}" + (" (erased on request)" if erased else ""))
    text = json.dumps(data, indent=2, ensure_ascii=False)
    if out is None:
        click.echo(text)
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + "\n", encoding="utf-8")
    err_console.print(f"wrote {out} ({len(data['records'])} record(s))")


@subscribers.command("erase")
@click.argument("address")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--scan", is_flag=True, help="Also read every record (see export-data).")
@pass_ctx
def subscribers_erase(ctx: Context, address: str, yes: bool, scan: bool) -> None:
    """Erase everything held about ADDRESS for good (GDPR erasure); only a hash of the
    address is kept, so that it is never mailed again. A lesson already on its way to the
    address is waited for first, as for an unsubscribe."""
    from course.subscribers.privacy import erase, record_ids

    address = _address(address)
    store = ctx.runtime.store
    if not yes:
        found = len(record_ids(store, address, scan))
        click.confirm(
            f"Erase {address} ({found} record(s)) for good? This cannot be undone",
            abort=True,
            err=True,
        )
    result = erase(store, address, utc_now(), scan=scan)
    if result.records:
        console.print(
            f"{address}: erased {len(result.records)} record(s), {result.keys} key(s); "
            "never mailed again"
        )
    elif result.already:
        console.print(f"{address}: nothing held; already erased, never mailed again")
    else:
        console.print(f"{address}: nothing held; suppressed, never mailed again")
