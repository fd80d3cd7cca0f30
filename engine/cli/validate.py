"""`engine validate FILE...`: every problem of every file, one line each, sorted by position."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from engine.errors import EX_CONFIG, EX_OK, Diagnostic, ProfileError
from engine.profile.build import diagnose
from engine.profile.load import display_name


def check_file(
    path: Path, *, check_env: bool, environ: Mapping[str, str] | None = None
) -> list[Diagnostic]:
    """Every diagnostic of one profile (errors and warnings), sorted."""
    try:
        _profile, found = diagnose(path, environ, check_env=check_env, require_env=check_env)
    except ProfileError as exc:  # the file could not be read or composed at all
        found = list(exc.diagnostics)
    return sorted(found, key=Diagnostic.sort_key)


def command(files: Sequence[Path], *, strict: bool, fmt: str, check_env: bool) -> int:
    results = {display_name(f): check_file(f, check_env=check_env) for f in files}
    found = [d for diags in results.values() for d in diags]
    errors = sum(d.severity == "error" for d in found)
    warnings = len(found) - errors
    failed = errors > 0 or (strict and warnings > 0)
    if fmt == "json":
        report = {
            "valid": not failed,
            "errors": errors,
            "warnings": warnings,
            "files": [
                {
                    "file": name,
                    "valid": not any(d.severity == "error" or strict for d in diags),
                    "diagnostics": [d.as_json() for d in diags],
                }
                for name, diags in results.items()
            ],
        }
        print(json.dumps(report, indent=2))
    else:
        for name, diags in results.items():
            for diag in diags:
                print(diag.render(), file=sys.stderr)
            if not any(d.severity == "error" for d in diags):
                print(f"{name}: ok" + (f" ({len(diags)} warnings)" if diags else ""))
        noun = "file" if len(files) == 1 else "files"
        print(
            f"{errors} error{'s' * (errors != 1)}, {warnings} warning{'s' * (warnings != 1)} "
            f"in {len(files)} {noun}"
            + (" (--strict: warnings are errors)" if strict and warnings else ""),
            file=sys.stderr,
        )
    return EX_CONFIG if failed else EX_OK
