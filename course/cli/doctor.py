"""``course doctor``: whether a deployment is ready to go live, one ✓/✗ line per check with the
fix for each ✗; exit 1 on any ✗. It reads the settings without the production guard (which
would stop at the first fault) and lists every fault, as production would judge them."""

from __future__ import annotations

import json

import click

from course.cli.group import cli
from course.cli.health import BEAT_MAX_AGE, beat_health
from course.clock import utc_now
from course.doctor import checks, probes
from course.doctor.checks import Line
from course.reports.settling import settling_status
from course.settings import Settings, SettingsError, audit_env

PING_TIMEOUT = 1.0  # seconds a ping waits for the workers' answers


def _nameserver(_ctx, _param, value: str | None) -> tuple[str, int] | None:
    try:
        return probes.parse_nameserver(value) if value else None
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@cli.command()
@click.option(
    "--nameserver",
    callback=_nameserver,
    metavar="HOST[:PORT]",
    help="Ask this name server (default: the system resolver).",
)
@click.option(
    "--dkim-selector",
    "selectors",
    multiple=True,
    metavar="S",
    help="Check the DKIM key at S._domainkey (repeatable) instead of SendGrid's s1/s2 CNAMEs.",
)
@click.option(
    "--return-path",
    metavar="HOST",
    help="SendGrid's return-path host (emNNNN, as domain authentication shows it).",
)
@click.option(
    "--dns-timeout",
    type=click.FloatRange(min=0.1),
    default=3.0,
    show_default=True,
    help="Seconds to wait for the name server.",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of the checks.")
def doctor(nameserver, selectors: tuple[str, ...], return_path: str | None,
           dns_timeout: float, as_json: bool) -> None:  # fmt: skip
    """Check the deployment: settings, the schedule, Redis, beat and the workers, and the
    sending domain's SPF, DKIM and DMARC. One line per check; exit 1 on any ✗."""
    try:
        settings, problems = audit_env()
    except SettingsError as exc:  # a value that cannot be read at all: nothing else can run
        lines = [Line(False, "settings", str(exc), checks.SETTINGS_FIX)]
    else:
        lines = gather(settings, problems, probes.Dns(nameserver, dns_timeout),
                       selectors, return_path)  # fmt: skip
    if as_json:
        click.echo(json.dumps([line.as_dict() for line in lines], indent=2, ensure_ascii=False))
    else:
        for line in lines:
            click.echo(line.render())
    if not all(line.ok for line in lines):
        raise SystemExit(1)  # every line is printed: no one-line error to add


def gather(settings: Settings, problems: list[str], resolver: probes.Dns,
           selectors: tuple[str, ...], return_path: str | None) -> list[Line]:  # fmt: skip
    """Every check's line, in the order an operator fixes them."""
    lines = checks.settings_lines(settings.env, problems)
    lines.append(checks.base_url_line(settings.base_url, problems))
    lines.append(checks.transport_line(settings.transport))
    key = settings.sendgrid_webhook_public_key
    lines.append(checks.webhook_line(settings.transport, key, probes.webhook_key_error(key),
                                     problems))  # fmt: skip
    schedule, schedule_problems = probes.schedule_problems(settings.schedule_path)
    lines.append(checks.schedule_line(str(settings.schedule_path), schedule_problems))
    lines += _running(settings)
    if schedule is None:
        why = "the schedule did not load (its from address names the sending domain)"
        lines.append(checks.not_checked("sender", why, "correct the schedule first"))
        return lines
    course = schedule.course
    addresses = {"from": course.from_email, "reply_to": course.reply_to}
    sender = checks.sender_lines({k: v for k, v in addresses.items() if v})
    lines += sender
    domain = course.from_email.rpartition("@")[2].rstrip(".").lower()
    if not all(line.ok for line in sender):
        fix = "send from your own domain"
        lines.append(checks.not_checked("DNS", f"{domain} is not a real domain", fix))
        return lines
    return lines + _dns(resolver, domain, settings.transport, selectors, return_path)


def _running(settings: Settings) -> list[Line]:
    """Redis, beat and the workers: the running parts."""
    from course.store.embedded import MIN_REDIS_VERSION, redact_url, running_url
    from course.store.layout import LAYOUT

    url = settings.redis_url or running_url(settings.var_dir)
    if url is None:
        fix = "set REDIS_URL to the production Redis, or start the site (course run)"
        return [checks.not_checked("Redis", "REDIS_URL is unset and no embedded server runs",
                                   fix)]  # fmt: skip
    facts, beat_seen, error = probes.redis_facts(url)
    lines = checks.redis_lines(redact_url(url), facts, error, MIN_REDIS_VERSION)
    if facts is None:
        fix = "make Redis answer first"
        return lines + [checks.not_checked(name, "Redis does not answer", fix)
                        for name in ("store layout", "beat", "workers")]  # fmt: skip
    lines.append(checks.layout_line(probes.layout_facts(url), LAYOUT))
    lines.append(checks.beat_line(*beat_health(beat_seen, utc_now().timestamp(), BEAT_MAX_AGE)))
    lines.append(checks.workers_line(probes.ping_workers(settings, url, PING_TIMEOUT),
                                     PING_TIMEOUT))  # fmt: skip
    facts = probes.settling_facts(url)
    if facts is not None:
        lines.append(checks.settling_line(*settling_status(settings.settling_window, facts)))
    return lines


def _dns(resolver: probes.Dns, domain: str, transport: str, selectors: tuple[str, ...],
         return_path: str | None) -> list[Line]:  # fmt: skip
    """SPF, DKIM and DMARC of the sending domain."""
    path = None
    if return_path:
        host = return_path.rstrip(".").lower()
        host = host if host.endswith("." + domain) else f"{host}.{domain}"
        path = (host, resolver.cname(host), resolver.txt(host))
    lines = [checks.spf_line(domain, resolver.txt(domain), transport, path)]
    names = selectors or checks.SENDGRID_SELECTORS
    ask = resolver.txt if selectors else resolver.cname
    found = {name: ask(f"{name}._domainkey.{domain}") for name in names}
    lines += checks.dkim_lines(domain, found, sendgrid_cnames=not selectors)
    lines.append(checks.dmarc_line(*probes.dmarc_lookup(resolver, domain)))
    return lines
