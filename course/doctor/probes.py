"""What ``course doctor`` asks the world, as facts for :mod:`course.doctor.checks`: DNS
(dnspython, the system resolver or a given name server), Redis (through the store), the
workers (a Celery ping), the schedule file (as ``course validate`` reads it). Every failure
becomes a fact (a message), never an exception."""

from __future__ import annotations

import socket

import dns.exception
import dns.name
import dns.resolver
from kombu.exceptions import OperationalError

from course.doctor.checks import Lookup
from course.mail.render import Renderer, RenderError
from course.schedule import Schedule, ScheduleError, load_schedule
from course.settings import Settings, SettingsError


class Dns:
    """A resolver that turns every answer into a :class:`Lookup`. After one question times
    out the name server is taken as down: the rest get the same answer without waiting."""

    def __init__(self, nameserver: tuple[str, int] | None = None, timeout: float = 3.0):
        if nameserver is None:
            self.resolver = dns.resolver.Resolver()
            self.where = "the system resolver"
        else:
            host, port = nameserver
            self.resolver = dns.resolver.Resolver(configure=False)
            self.resolver.nameservers = [host]
            self.resolver.port = port
            self.where = f"{host}:{port}"
        self.resolver.lifetime = self.resolver.timeout = timeout
        self.down: str | None = None

    def txt(self, name: str) -> Lookup:
        """The TXT strings at ``name`` (a record's strings joined, as SPF and DKIM read them)."""
        return self._ask(name, "TXT", lambda r: _printable(b"".join(r.strings)))

    def cname(self, name: str) -> Lookup:
        return self._ask(name, "CNAME", lambda r: r.target.to_text().rstrip(".").lower())

    def _ask(self, name: str, kind: str, text) -> Lookup:
        if self.down:
            return Lookup(error=self.down)
        try:
            answer = self.resolver.resolve(name, kind, raise_on_no_answer=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return Lookup()
        except dns.exception.Timeout:
            self.down = f"{self.where} did not answer within {self.resolver.lifetime:g} s"
            return Lookup(error=self.down)
        except (dns.exception.SyntaxError, dns.name.NameTooLong) as exc:
            return Lookup(error=f"{name!r} is not a DNS name ({exc})")
        except dns.resolver.NoNameservers:
            return Lookup(error=f"{self.where} failed (SERVFAIL or refused)")
        except dns.exception.DNSException as exc:
            return Lookup(error=f"{self.where}: {exc}")
        return Lookup(records=tuple(text(record) for record in answer.rrset or ()))


def _printable(data: bytes) -> str:
    """A TXT record's bytes fit for a terminal: whoever writes the zone cannot send escape
    sequences to the operator's screen through it."""
    return "".join(c if c.isprintable() else "?" for c in data.decode("utf-8", "replace"))


def parse_nameserver(value: str) -> tuple[str, int]:
    """``HOST[:PORT]`` (``[v6]:PORT`` for IPv6) as an IP address and a port; ValueError names
    what is wrong."""
    host, port = value.strip(), 53
    if host.startswith("["):
        host, _, rest = host[1:].partition("]")
        if rest:
            port = _port(rest.removeprefix(":"))
    elif host.count(":") == 1:
        host, text = host.split(":")
        port = _port(text)
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except (socket.gaierror, UnicodeError):
        raise ValueError(f"{host!r} is not a host name or address") from None
    return str(found[0][4][0]), port


def _port(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"{text!r} is not a port")
    return int(text)


def dmarc_lookup(resolver: Dns, domain: str) -> tuple[str, Lookup]:
    """The DMARC record for mail from ``domain``: at ``_dmarc.<domain>``, else at its parent
    domains (a receiver looks at the organizational domain), down to two labels."""
    labels = domain.split(".")
    first = (f"_dmarc.{domain}", resolver.txt(f"_dmarc.{domain}"))
    for start in range(1, len(labels) - 1):
        if first[1].error or any(r.lower().startswith("v=dmarc1") for r in first[1].records):
            break
        parent = ".".join(labels[start:])
        found = resolver.txt(f"_dmarc.{parent}")
        if found.error or found.records:
            return f"_dmarc.{parent}", found
    return first


def redis_facts(url: str) -> tuple[dict[str, str] | None, float | None, str | None]:
    """INFO's version, AOF and eviction policy, and when beat was last seen; or why not."""
    from course.store import Store, StoreError, connect

    try:
        client = connect(url, socket_connect_timeout=3, socket_timeout=3, decode_responses=True)
        try:
            store = Store(client)
            return store.server_facts(), store.beat_seen(), None
        finally:
            client.close()
    except (StoreError, OSError, ValueError) as exc:
        return None, None, f"does not answer ({exc})"


def layout_facts(url: str) -> tuple[int | None, bool] | str:
    """The store's layout (None: an empty store) and whether a migration is under way; or,
    when the layout key cannot be read as one, the reason (a one-line message)."""
    from course.store import LayoutMismatch, Store, StoreError, connect

    try:
        client = connect(url, socket_connect_timeout=3, socket_timeout=3, decode_responses=True)
        try:
            store = Store(client)
            return store.stored_layout(), bool(store.migration_state())
        finally:
            client.close()
    except LayoutMismatch as exc:
        return str(exc)
    except (StoreError, OSError, ValueError) as exc:
        return f"does not answer ({exc})"


def settling_facts(url: str):
    """What the store says of uncertain sends (course.reports.settling), or None when Redis
    does not answer."""
    from course.store import Store, StoreError, connect

    try:
        client = connect(url, socket_connect_timeout=3, socket_timeout=3, decode_responses=True)
        try:
            return Store(client).settling_facts()
        finally:
            client.close()
    except (StoreError, OSError, ValueError):
        return None


def ping_workers(settings: Settings, url: str, timeout: float) -> list[str]:
    """The names of the Celery workers that answer a ping through ``url`` within ``timeout``."""
    from course.tasks import create_app

    app = create_app(settings, broker_url=url)
    try:
        replies = app.control.ping(timeout=timeout) or []
    except (OperationalError, OSError):  # Redis went away since it answered: no one answered
        replies = []
    finally:
        app.close()
    return [name for reply in replies for name in reply]


def schedule_problems(path) -> tuple[Schedule | None, list[str]]:
    """The schedule at ``path`` and every problem ``course validate`` reports of it."""
    from course.mail.checks import check_content
    from course.web.pages import check_pages

    try:
        schedule = load_schedule(path)
        problems = check_content(schedule, Renderer(schedule))
        problems += check_pages(schedule.templates_dir, schedule.display)
    except (ScheduleError, RenderError) as exc:
        return None, str(exc).splitlines() or [type(exc).__name__]
    except OSError as exc:
        return None, [f"{path}: {exc.strerror or exc}"]
    return schedule, problems


def webhook_key_error(key: str | None) -> str | None:
    """Why the Event Webhook's verification key does not parse (the web app's own parser)."""
    if key is None:
        return None
    from course.web.webhook import Verifier

    try:
        Verifier(key)
    except SettingsError as exc:
        return str(exc)
    return None
