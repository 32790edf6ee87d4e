"""The ``podkit`` command: slot entrypoints, the sidecar and probes."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from .errors import PodkitError
from .inherit import STYLES
from .layout import DEFAULT_DIR, SharedDir, SlotEnv
from .readiness import observe
from .runner import DEFAULT_STOP_TIMEOUT_S, SlotRunner, signal_named


def _shared_from(args: argparse.Namespace) -> SharedDir:
    return SharedDir.from_environ(override=args.dir)


def cmd_run(args: argparse.Namespace) -> int:
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        raise PodkitError("no command given; use `podkit run -- CMD [ARGS...]`")
    if args.pass_style is not None and not args.listen:
        raise PodkitError("--pass says how to pass the listeners of --listen; give at least "
                          "one --listen NAME=tcp://HOST:PORT")
    try:
        stop_signal = signal_named(args.stop_signal)
    except PodkitError as exc:
        raise PodkitError(f"--stop-signal: {exc}; use a name such as TERM, QUIT or INT"
                          ) from None
    return SlotRunner(SlotEnv.from_environ(), command, args.mode, listen=args.listen,
                      pass_style=args.pass_style or "podkit", stop_signal=stop_signal,
                      stop_timeout=args.stop_timeout).run()


def cmd_pause(args: argparse.Namespace) -> int:
    from .pause import run_pause

    return run_pause(SlotEnv.from_environ(require_version=False))


def cmd_sidecar(args: argparse.Namespace) -> int:
    from prometheus_client import CollectorRegistry

    from .probes import ProbeRunner, parse_probes
    from .reload import ConfigReloader, Hook
    from .sidecar import TOKEN_ENV, Sidecar

    shared = _shared_from(args)
    shared.check_writable()
    registry = CollectorRegistry()
    extra_status = {}
    config_dirs = args.config_dir or [d for d in os.environ.get("PODKIT_CONFIG_DIRS", "")
                                      .split(":") if d]
    reloader = None
    if config_dirs:
        reloader = ConfigReloader(shared, [Path(d) for d in config_dirs],
                                  Hook.parse(args.config_hook), registry,
                                  timeout_s=args.hook_timeout)
        extra_status["config"] = reloader.status
    probes = ProbeRunner(shared, parse_probes(os.environ.get("PODKIT_PROBES")))
    extra_status["business_probes"] = probes.status
    try:
        sidecar = Sidecar(shared, address=args.address, port=args.port, registry=registry,
                          extra_status=extra_status, token=os.environ.get(TOKEN_ENV),
                          slot_health=probes.verdict if probes.probes else None)
    except OSError as exc:
        raise PodkitError(f"cannot listen on {args.address}:{args.port}: {exc.strerror}; "
                          "choose another --port") from exc
    if reloader is not None:
        reloader.start()
    if probes.probes:
        probes.start()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"podkit sidecar: serving {shared.root} on {args.address}:{sidecar.port}",
          flush=True)
    sidecar.serve_forever()
    return 0


def cmd_probe(args: argparse.Namespace) -> int:
    shared = _shared_from(args)
    shared.check_exists()
    view = observe(shared)
    if args.check == "ready":
        ready, reason = view.readiness()
    else:
        ready, reason = view.slot_readiness(SlotEnv.from_environ(require_version=False).slot)
    print(reason)
    return 0 if ready else 1


class _Parser(argparse.ArgumentParser):
    """Usage errors as one ``podkit:`` line, like every other error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"podkit: {message}; see `{self.prog} --help`\n")


RUN_DESCRIPTION = """\
The entrypoint of a business slot container (PID 1).

wrapped (the default): podkit stands by and starts CMD once its slot holds the hand-over lock.
Any program works. With --listen, podkit receives the listeners from the active slot (binding
them only when nobody serves), holds them, and CMD inherits them at descriptors 3, 4, ... in
the declared way (--pass); on SIGTERM podkit sends CMD --stop-signal, hands over as soon as CMD
closed its listeners, and lets CMD finish in-flight work for up to --stop-timeout. Connections
wait in the kernel's queue meanwhile: none is refused. Without --listen, CMD binds its ports
itself, and connections are refused while neither slot's CMD listens.

warm: CMD starts at once and asks podkit when to serve (podkit.slot, podkit.upgrader).

Example, an unmodified nginx listening on 0.0.0.0:80 in its own configuration:
  podkit run --listen web=tcp://0.0.0.0:80 --pass nginx --stop-signal QUIT \\
      -- nginx -g 'daemon off;'
"""


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="podkit", description=__doc__)
    sub = parser.add_subparsers(dest="verb", required=True, parser_class=_Parser)

    run = sub.add_parser(
        "run", help="business slot entrypoint: podkit run -- CMD [ARGS...]",
        formatter_class=argparse.RawDescriptionHelpFormatter, description=RUN_DESCRIPTION)
    run.add_argument("--mode", choices=("wrapped", "warm"),
                     default=os.environ.get("PODKIT_MODE", "wrapped"),
                     help="wrapped: start CMD once active; warm: start CMD now, it asks "
                          "when to serve (default: $PODKIT_MODE or wrapped)")
    run.add_argument("--listen", action="append", default=[], metavar="NAME=tcp://HOST:PORT",
                     help="wrapped: a listener podkit holds and passes to CMD (repeatable, in "
                          "descriptor order; udp://, IPv6 hosts in brackets)")
    run.add_argument("--pass", dest="pass_style", choices=STYLES,
                     help="wrapped: how CMD inherits the listeners: systemd (LISTEN_FDS), "
                          "nginx (NGINX) or podkit (PODKIT_LISTENERS; the default)")
    run.add_argument("--stop-signal", default="TERM", metavar="NAME",
                     help="wrapped: the signal that stops CMD gracefully, sent when podkit "
                          "gets SIGTERM (default TERM; nginx: QUIT)")
    run.add_argument("--stop-timeout", type=float, default=DEFAULT_STOP_TIMEOUT_S,
                     metavar="SECONDS",
                     help="wrapped: how long CMD may finish its work after the stop before "
                          "podkit kills it (default %(default)g)")
    run.add_argument("command", nargs=argparse.REMAINDER, help="-- CMD [ARGS...]")
    run.set_defaults(func=cmd_run)

    pause = sub.add_parser("pause", help="idle slot entrypoint")
    pause.set_defaults(func=cmd_pause)

    sidecar = sub.add_parser("sidecar", help="serve /readyz /healthz /state /metrics (the last "
                             "two to loopback peers, or with the bearer token in "
                             "$PODKIT_SIDECAR_TOKEN)")
    sidecar.add_argument("--dir", help=f"shared directory (default $PODKIT_DIR or {DEFAULT_DIR})")
    sidecar.add_argument("--address", default="0.0.0.0")
    sidecar.add_argument("--port", type=int,
                         default=int(os.environ.get("PODKIT_SIDECAR_PORT", "9901")))
    sidecar.add_argument("--config-dir", action="append",
                         help="a config directory to watch (repeatable; default "
                              "$PODKIT_CONFIG_DIRS, colon-separated)")
    sidecar.add_argument("--config-hook", default=os.environ.get("PODKIT_CONFIG_HOOK", "none"),
                         help="signal:<NAME>, restart, command:<CMD> or none "
                              "(default $PODKIT_CONFIG_HOOK or none)")
    sidecar.add_argument("--hook-timeout", type=float, default=30.0,
                         help="seconds a hook may take")
    sidecar.set_defaults(func=cmd_sidecar)

    probe = sub.add_parser("probe", help="exec probes: exit 0 when the check passes")
    probe.add_argument("check", choices=("ready", "slot"),
                       help="ready: the pod is converged (the sidecar's rule); slot: this "
                            "slot ($PODKIT_SLOT) is up: idle, standing by or active")
    probe.add_argument("--dir", help=f"shared directory (default $PODKIT_DIR or {DEFAULT_DIR})")
    probe.set_defaults(func=cmd_probe)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except PodkitError as exc:
        print(f"podkit: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
