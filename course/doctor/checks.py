"""The checks of ``course doctor`` as pure functions: facts in (settings problems, what Redis
and DNS answered), :class:`Line` out (✓ or ✗, and for a ✗ the fix). Nothing here does I/O;
:mod:`course.doctor.probes` gathers the facts."""

from __future__ import annotations

from dataclasses import dataclass

from course.guard import reserved_domain

SENDGRID_HOST = "sendgrid.net"
SENDGRID_SELECTORS = ("s1", "s2")  # the DKIM CNAMEs of SendGrid's domain authentication
SETTINGS_FIX = "set it in the environment (.env with compose) and restart the services"


@dataclass(frozen=True)
class Line:
    """One check's verdict: ``✓ check: detail`` or ``✗ check: detail — fix: fix``."""

    ok: bool
    check: str
    detail: str
    fix: str | None = None

    def render(self) -> str:
        mark = "✓" if self.ok else "✗"
        fix = f" — fix: {self.fix}" if self.fix and not self.ok else ""
        return f"{mark} {self.check}: {self.detail}{fix}"

    def as_dict(self) -> dict[str, object]:
        return {"check": self.check, "ok": self.ok, "detail": self.detail, "fix": self.fix}


@dataclass(frozen=True)
class Lookup:
    """What DNS answered one question: the records (TXT strings, CNAME targets without the
    final dot), none (no such name, or no record of that type), or why it could not tell."""

    records: tuple[str, ...] = ()
    error: str | None = None  # a timeout, SERVFAIL: the answer is unknown


def settings_lines(env: str, problems: list[str]) -> list[Line]:
    """COURSE_ENV, then every problem the production guard finds, except those of the base URL
    and the webhook key (their own lines)."""
    lines = []
    if env == "dev":
        lines.append(
            Line(
                False,
                "settings",
                "COURSE_ENV is dev: links are signed and webhook "
                "events accepted as on a developer's machine (the checks below are "
                "production's)",
                "set COURSE_ENV=production",
            )
        )
    own = ("COURSE_BASE_URL", "SENDGRID_WEBHOOK_PUBLIC_KEY")
    rest = [problem for problem in problems if not problem.startswith(own)]
    lines += [Line(False, "settings", problem, SETTINGS_FIX) for problem in rest]
    if not lines:
        lines.append(Line(True, "settings", f"COURSE_ENV={env}; secrets and tokens are strong"))
    return lines


def base_url_line(base_url: str, problems: list[str]) -> Line:
    for problem in problems:
        if problem.startswith("COURSE_BASE_URL"):
            return Line(False, "base URL", problem, SETTINGS_FIX)
    return Line(True, "base URL", f"{base_url} is https and public")


def transport_line(transport: str) -> Line:
    """How email leaves: the outbox only writes files, which no reader ever gets."""
    if transport == "outbox":
        return Line(
            False,
            "transport",
            "COURSE_TRANSPORT=outbox writes every email to a folder: nothing reaches a reader",
            "set COURSE_TRANSPORT=sendgrid (with SENDGRID_API_KEY) or smtp (with SMTP_URL)",
        )
    return Line(True, "transport", f"COURSE_TRANSPORT={transport}")


def webhook_line(
    transport: str, key: str | None, parse_error: str | None, problems: list[str]
) -> Line:
    """The Event Webhook's verification key: there with SendGrid, and a key that parses."""
    if parse_error:
        return Line(
            False,
            "webhook key",
            parse_error,
            "paste the key again from SendGrid: Mail Settings → Event Webhook → "
            "Signed Event Webhook (base64, no PEM lines)",
        )
    for problem in problems:
        if problem.startswith("SENDGRID_WEBHOOK_PUBLIC_KEY"):
            return Line(False, "webhook key", problem, SETTINGS_FIX)
    if key is None:
        return Line(True, "webhook key", f"not needed with COURSE_TRANSPORT={transport}")
    return Line(True, "webhook key", "SENDGRID_WEBHOOK_PUBLIC_KEY parses as a public key")


def schedule_line(path: str, problems: list[str]) -> Line:
    if not problems:
        return Line(True, "schedule", f"{path} is valid")
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return Line(
        False,
        "schedule",
        f"{problems[0]}{more}",
        f"run course validate for every problem, then correct {path}",
    )


def sender_lines(addresses: dict[str, str]) -> list[Line]:
    """The schedule's sender addresses (field -> address): none on a reserved domain."""
    lines = []
    for field, address in addresses.items():
        domain = address.rpartition("@")[2]
        if reserved_domain(domain):
            lines.append(
                Line(
                    False,
                    "sender",
                    f"{field} {address}: {domain} is a reserved domain no mail can come from",
                    f"set course.{field} in the schedule to an address on your "
                    "authenticated domain",
                )
            )
    return lines or [Line(True, "sender", ", ".join(addresses.values()))]


def redis_lines(
    url: str, facts: dict[str, str] | None, error: str | None, minimum: tuple[int, int]
) -> list[Line]:
    """Redis answers, is new enough, appends every write (AOF) and never evicts a key."""
    if facts is None:
        return [
            Line(
                False,
                "Redis",
                f"{url}: {error}",
                "start Redis, or correct REDIS_URL (redis://[:password@]host:port/db)",
            )
        ]
    version = facts.get("redis_version", "")
    parts = tuple(int(p) for p in version.split(".")[:2] if p.isdigit())
    wanted = ".".join(map(str, minimum))
    lines = [
        Line(True, "Redis", f"{version} at {url}")
        if parts >= minimum
        else Line(
            False,
            "Redis",
            f"{version} at {url} is too old ({wanted} or newer needed)",
            f"upgrade Redis to {wanted} or newer",
        )
    ]
    if facts.get("aof_enabled") == "1":
        lines.append(Line(True, "Redis AOF", "on (every write is kept)"))
    else:
        lines.append(
            Line(
                False,
                "Redis AOF",
                "off: a restart forgets the last claims, and a lesson may go twice",
                "appendonly yes (redis.conf or --appendonly "
                "yes; a managed Redis: a plan with AOF persistence)",
            )
        )
    policy = facts.get("maxmemory_policy", "")
    if policy == "noeviction":
        lines.append(Line(True, "Redis eviction", "maxmemory-policy noeviction"))
    else:
        lines.append(
            Line(
                False,
                "Redis eviction",
                f"maxmemory-policy {policy}: a full Redis drops keys (ledger entries, subscribers)",
                "maxmemory-policy noeviction",
            )
        )
    return lines


def beat_line(healthy: bool, message: str) -> Line:
    """``message`` from :func:`course.cli.health.beat_health`."""
    text = message.removeprefix("beat: ")
    return Line(
        healthy,
        "beat",
        text,
        "start exactly one beat: celery -A worker beat (compose: docker compose up -d beat)",
    )


def workers_line(answered: list[str], timeout: float) -> Line:
    if answered:
        return Line(True, "workers", f"{len(answered)} answering: {', '.join(sorted(answered))}")
    return Line(
        False,
        "workers",
        f"none answered a ping within {timeout:g} s",
        "start them: celery -A worker worker (compose: docker compose up -d worker)",
    )


def settling_line(fine: bool, message: str) -> Line:
    """Uncertain sends and whether they can be settled (course.reports.settling)."""
    fix = "configure SendGrid's signed Event Webhook (README: Operations, uncertain sends)"
    return Line(fine, "uncertain sends", message, None if fine else fix)


def layout_line(facts: tuple[int | None, bool] | str, current: int) -> Line:
    """The store's layout (:func:`course.doctor.probes.layout_facts`) against this release's."""
    fix = "stop the workers, beat and the web app, back up, then run `course migrate`"
    if isinstance(facts, str):
        return Line(False, "store layout", facts, "restore the backup made before the upgrade")
    found, migrating = facts
    if found is None:
        return Line(True, "store layout", f"empty store (layout {current} at the first start)")
    if found == current and not migrating:
        return Line(True, "store layout", f"layout {current}")
    if found < current:
        under = ", a migration was interrupted" if migrating else ""
        return Line(False, "store layout", f"layout {found}, older than this release's "
                    f"layout {current}{under}: every process refuses to start", fix)  # fmt: skip
    if found > current:
        return Line(False, "store layout", f"layout {found} was written by a newer release "
                    f"(this one knows {current})", "run the newer release")  # fmt: skip
    return Line(False, "store layout", f"layout {current}, a migration left unfinished", fix)


def not_checked(check: str, why: str, fix: str) -> Line:
    return Line(False, check, f"not checked: {why}", fix)


def _spf_records(lookup: Lookup) -> list[str]:
    return [r for r in lookup.records if r.lower().split(" ", 1)[0] == "v=spf1"]


def _includes_sendgrid(record: str) -> bool:
    return f"include:{SENDGRID_HOST}" in record.lower().split()


def _dns_failed(check: str, name: str, lookup: Lookup) -> Line:
    return Line(
        False,
        check,
        f"no answer for {name}: {lookup.error}",
        "check that the name server answers (--nameserver), then run doctor again",
    )


def spf_line(
    domain: str, txt: Lookup, transport: str, return_path: tuple[str, Lookup, Lookup] | None = None
) -> Line:
    """One SPF record at ``domain``; with SendGrid, one that includes sendgrid.net, or a
    return-path host (``emNNNN.domain``) that SendGrid's automated security answers for: a
    CNAME to sendgrid.net, or (automated security off) its own SPF including sendgrid.net."""
    if txt.error:
        return _dns_failed("SPF", domain, txt)
    records = _spf_records(txt)
    if len(records) > 1:
        return Line(
            False,
            "SPF",
            f"{len(records)} SPF records at {domain}; receivers take "
            "more than one as an error (RFC 7208)",
            "merge them into one TXT record",
        )
    if transport != "sendgrid":
        if records:
            return Line(True, "SPF", f"{domain}: {records[0]}")
        return Line(
            False,
            "SPF",
            f"no SPF record (TXT v=spf1 ...) at {domain}",
            f"add TXT {domain}: v=spf1 include:<your mail provider> ~all",
        )
    if records and _includes_sendgrid(records[0]):
        return Line(True, "SPF", f"{domain}: {records[0]}")
    found = (
        f"the SPF record at {domain} does not include {SENDGRID_HOST}"
        if records
        else (f"no SPF record at {domain}")
    )
    if return_path is not None:
        host, cname, own = return_path
        for lookup in (cname, own):
            if lookup.error:
                return _dns_failed("SPF", host, lookup)
        if any(t.endswith("." + SENDGRID_HOST) for t in cname.records):
            return Line(
                True,
                "SPF",
                f"return path {host} → {cname.records[0]} (SendGrid's "
                "automated security keeps its SPF)",
            )
        if any(_includes_sendgrid(r) for r in _spf_records(own)):
            return Line(True, "SPF", f"return path {host}: {_spf_records(own)[0]}")
        found += f", and the return path {host} is not SendGrid's"
    return Line(
        False,
        "SPF",
        found,
        "authenticate the domain in SendGrid (Settings → Sender Authentication, "
        "automated security on), add its three CNAMEs and pass the return-path host "
        f"with --return-path emNNNN; or add include:{SENDGRID_HOST} to the SPF record "
        f"(v=spf1 include:{SENDGRID_HOST} ~all)",
    )


def _tags(record: str) -> dict[str, str]:
    pairs = (part.split("=", 1) for part in record.split(";") if "=" in part)
    return {name.strip().lower(): value.strip() for name, value in pairs}


def dkim_lines(domain: str, selectors: dict[str, Lookup], sendgrid_cnames: bool) -> list[Line]:
    """SendGrid's ``s1``/``s2._domainkey`` CNAMEs (``sendgrid_cnames``: the lookups are
    CNAMEs), or the selectors given, each a TXT record with a key (``p=`` not empty)."""
    lines = []
    for selector, lookup in selectors.items():
        name = f"{selector}._domainkey.{domain}"
        if lookup.error:
            lines.append(_dns_failed("DKIM", name, lookup))
        elif sendgrid_cnames:
            target = next(iter(lookup.records), None)
            if target and target.endswith("." + SENDGRID_HOST):
                lines.append(Line(True, "DKIM", f"{name} → {target}"))
                continue
            what = f"points to {target}, not SendGrid" if target else "has no CNAME"
            lines.append(
                Line(
                    False,
                    "DKIM",
                    f"{name} {what}",
                    "add the s1 and s2 CNAMEs SendGrid shows under Settings → Sender "
                    "Authentication, or name your own selector with "
                    "--dkim-selector S",
                )
            )
        elif any(_tags(record).get("p") for record in lookup.records):
            lines.append(Line(True, "DKIM", f"{name} has a public key"))
        else:
            lines.append(
                Line(
                    False,
                    "DKIM",
                    f"no DKIM key (TXT with p=...) at {name}",
                    "publish the selector's key your mail provider gives you",
                )
            )
    return lines


def dmarc_line(name: str, txt: Lookup) -> Line:
    """A DMARC policy at ``name`` (``_dmarc.<domain>``): Gmail and Yahoo ask bulk senders for
    one; ``p=none`` passes, with a note."""
    fix = (
        f"add TXT {name}: v=DMARC1; p=none; rua=mailto:dmarc-reports@{name[7:]} "
        "(then p=quarantine once the reports show only your own mail)"
    )
    if txt.error:
        return _dns_failed("DMARC", name, txt)
    records = [r for r in txt.records if r.strip().lower().startswith("v=dmarc1")]
    if not records:
        return Line(
            False,
            "DMARC",
            f"no DMARC record at {name}; Gmail and Yahoo require one of bulk senders",
            fix,
        )
    if len(records) > 1:
        return Line(
            False,
            "DMARC",
            f"{len(records)} DMARC records at {name}; receivers then apply none",
            "keep one",
        )
    policy = _tags(records[0]).get("p", "").lower()
    if policy not in ("none", "quarantine", "reject"):
        return Line(False, "DMARC", f"{name}: no valid p= policy in {records[0]!r}", fix)
    note = " (monitoring only: move to quarantine once the reports are clean)"
    return Line(True, "DMARC", f"{name}: p={policy}{note if policy == 'none' else ''}")
