"""The stand-in from the command line: ``python -m course.testing.sendgrid_standin --port 8090
--latency-ms 30`` serves until Ctrl-C (``--rate-429 0.1 --rate-500 0.05 --rate-hang 0.01
--seed 7`` for random faults)."""

from __future__ import annotations

import argparse
import signal
import sys
import time
from collections.abc import Sequence

from course.testing.sendgrid_standin.contract import MAIL_SEND_PATH
from course.testing.sendgrid_standin.replies import Faults
from course.testing.sendgrid_standin.server import SendGridStandIn


def _describe(faults: Faults | None) -> str:
    if faults is None:
        return ""
    hang = "answers" if faults.hang_answers else "drops"
    return (
        f", faults 429 {faults.rate_429:g} 500 {faults.rate_500:g} hang {faults.rate_hang:g}"
        f" ({faults.hang_for:g} s, then {hang}) seed {faults.seed}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m course.testing.sendgrid_standin",
        description="Serve a local stand-in of SendGrid's POST /v3/mail/send until Ctrl-C.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--latency-ms", type=float, default=0.0, help="added to every answer")
    parser.add_argument("--api-key", default="SG.test", help="the only accepted bearer token")
    parser.add_argument("--quiet", action="store_true", help="do not log each request")
    parser.add_argument("--rate-429", type=float, default=0.0, help="share answered 429")
    parser.add_argument("--rate-500", type=float, default=0.0, help="share answered 500")
    parser.add_argument("--rate-hang", type=float, default=0.0, help="share that hang")
    parser.add_argument("--hang-s", type=float, default=1.0, help="how long a hang lasts")
    parser.add_argument(
        "--hang-drops", action="store_true", help="a hang ends unanswered (default: it answers)"
    )
    parser.add_argument("--reset-s", type=float, default=1.0, help="a 429's reset, ahead")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random faults")
    args = parser.parse_args(argv)
    if args.latency_ms < 0:
        parser.error("--latency-ms must be zero or more")
    faults = None
    if args.rate_429 or args.rate_500 or args.rate_hang:
        try:
            faults = Faults(args.rate_429, args.rate_500, args.rate_hang, args.reset_s,
                            args.hang_s, not args.hang_drops, args.seed)  # fmt: skip
        except ValueError as exc:
            parser.error(str(exc))
    standin = SendGridStandIn(
        api_key=args.api_key,
        host=args.host,
        port=args.port,
        latency=args.latency_ms / 1000,
        faults=faults,
    )
    standin.log_requests = not args.quiet
    # Started from a background shell, SIGINT arrives ignored; "until Ctrl-C" must still hold.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        standin.start()
    except OSError as exc:
        print(f"sendgrid-standin: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    try:
        print(
            f"SendGrid stand-in on {standin.url}{MAIL_SEND_PATH} (api key {args.api_key!r},"
            f" latency {args.latency_ms:g} ms{_describe(faults)}); Ctrl-C to stop",
            flush=True,
        )
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut stop() short
        standin.stop()
    print(f"stopped after {len(standin.accepted)} accepted sends", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
