"""`engine lb-config PROFILE --format haproxy|nginx [--listen HOST:PORT]`.

Prints a complete balancer configuration for the profile's `[cluster.balancer]` to stdout;
the profile's warnings (e.g. the balancer is not a trusted proxy) go to stderr. Exit 78 when
the profile is invalid or declares no balancer, 2 when the format cannot express it or
`--listen` is not host:port.
"""

from __future__ import annotations

import sys
from pathlib import Path

from engine.cluster.lbconfig import NoBalancer, Unsupported, plan, render
from engine.cluster.options import split_host_port
from engine.errors import EX_OK, EX_USAGE, Diagnostic, ProfileError
from engine.profile.build import build
from engine.profile.validate import resolve


def command(file: Path, *, fmt: str, listen: str | None) -> int:
    if listen is not None:
        try:
            split_host_port(listen)
        except ValueError as exc:
            print(f"engine lb-config: error: --listen: {exc}", file=sys.stderr)
            return EX_USAGE
    resolved = resolve(file, require_env=False)
    profile = build(resolved)
    for warning in sorted(resolved.warnings, key=Diagnostic.sort_key):
        print(warning.render(), file=sys.stderr)
    try:
        text = render(fmt, plan(profile, listen=listen))
    except NoBalancer:
        raise ProfileError(
            [
                resolved.loaded.diagnostic(
                    ("cluster",),
                    "engine lb-config needs a [cluster.balancer] table",
                    hint="declare its strategy, stickiness and nodes",
                )
            ]
        ) from None
    except Unsupported as exc:
        print(f"engine lb-config: error: {exc.message}", file=sys.stderr)
        return EX_USAGE
    sys.stdout.write(text)
    return EX_OK


__all__ = ["command"]
