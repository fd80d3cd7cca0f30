"""Read a profile: TOML files, the `extends` chain, and `${VAR}` interpolation.

Everything here produces plain data plus *where each value came from*; validation and
building happen later. Errors are collected as `Diagnostic`s with file and line, never raised
as bare exceptions, so one run of `engine validate` can report every problem at once.
"""

from __future__ import annotations

import copy
import re
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from engine.errors import Diagnostic, ProfileError
from engine.profile.locate import KeyPath, Position, format_path, locate, nearest

_TOML_ERROR_POS = re.compile(r"\(at line (\d+), column (\d+)\)")
_VAR = re.compile(r"\$(\$)?\{([^}]*)\}")
_VAR_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
UNSET = " (unset)"  # suffix of a variable name whose placeholder stands in for its value


@dataclass(frozen=True, slots=True)
class Source:
    """One TOML file of an `extends` chain."""

    path: Path
    display: str
    data: dict[str, Any]
    positions: dict[KeyPath, Position]

    def defines(self, path: KeyPath) -> bool:
        node: Any = self.data
        for key in path:
            if isinstance(key, int):
                if not isinstance(node, list) or key >= len(node):
                    return False
            elif not isinstance(node, dict) or key not in node:
                return False
            node = node[key]
        return True


@dataclass(frozen=True, slots=True)
class Origin:
    """Where one resolved value came from, for `engine show --origin` and error positions."""

    kind: Literal["file", "env", "default"]
    file: str | None = None
    line: int | None = None
    col: int | None = None
    variables: tuple[str, ...] = ()

    def describe(self) -> str:
        if self.kind == "default":
            return "default"
        where = f"{self.file}:{self.line}" if self.line else str(self.file)
        if self.kind == "env":
            return f"env {', '.join(self.variables)} (in {where})"
        return where


@dataclass(slots=True)
class Loaded:
    """A merged, interpolated profile document and the sources it came from."""

    data: dict[str, Any]
    sources: list[Source]  # most derived first
    env_paths: dict[KeyPath, tuple[str, ...]] = field(default_factory=dict)

    @property
    def unset_variables(self) -> list[str]:
        """Variables without a value or default, replaced by placeholders (`require_env=False`)."""
        names = {
            name.removesuffix(UNSET)
            for used in self.env_paths.values()
            for name in used
            if name.endswith(UNSET)
        }
        return sorted(names)

    @property
    def display(self) -> str:
        return self.sources[0].display if self.sources else "<profile>"

    def locate(self, path: KeyPath) -> tuple[str, Position | None]:
        """File and position of the value at `path`, or of its nearest located ancestor."""
        for cut in range(len(path), -1, -1):
            prefix = path[:cut]
            for source in self.sources:
                if source.defines(prefix):
                    found = nearest(source.positions, path)
                    return source.display, found[1] if found else None
        return self.display, None

    def base_dir(self, path: KeyPath) -> Path:
        """Directory that relative file paths at `path` are resolved from: its own file's."""
        for source in self.sources:
            if source.defines(path):
                return source.path.parent
        return self.sources[0].path.parent

    def origin(self, path: KeyPath) -> Origin:
        for source in self.sources:
            if source.defines(path):
                hit = nearest(source.positions, path)
                pos = hit[1] if hit else None
                line, col = (pos.line, pos.col) if pos else (None, None)
                variables = self.env_paths.get(path)
                if variables:
                    return Origin("env", source.display, line, col, variables)
                return Origin("file", source.display, line, col)
        return Origin("default")

    def diagnostic(self, path: KeyPath, message: str, **extra: Any) -> Diagnostic:
        file, pos = self.locate(path)
        return Diagnostic(
            file=file,
            path=format_path(path),
            message=message,
            line=pos.line if pos else None,
            col=pos.col if pos else None,
            **extra,
        )


def display_name(path: Path) -> str:
    """Paths relative to the working directory when possible: what the user typed."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def read_source(path: Path, display: str | None = None) -> Source:
    """Parse one TOML file; syntax errors become a located `Diagnostic`."""
    shown = display or display_name(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ProfileError([Diagnostic(shown, "<file>", "file not found")]) from None
    except OSError as exc:
        raise ProfileError(
            [Diagnostic(shown, "<file>", f"cannot read file: {exc.strerror}")]
        ) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad_line = raw[: exc.start].count(b"\n") + 1
        diag = Diagnostic(shown, "<file>", "file is not valid UTF-8", line=bad_line, col=1)
        raise ProfileError([diag]) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        match = _TOML_ERROR_POS.search(message)
        line = int(match.group(1)) if match else None
        col = int(match.group(2)) if match else None
        message = _TOML_ERROR_POS.sub("", message).strip()
        diag = Diagnostic(shown, "<toml>", f"TOML syntax error: {message}", line=line, col=col)
        raise ProfileError([diag]) from None
    return Source(path=path, display=shown, data=data, positions=locate(text))


def merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge tables; arrays and scalars from `override` replace those of `base`."""
    result = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(result.get(key), Mapping):
            result[key] = merge(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def read_chain(path: Path) -> list[Source]:
    """The file and everything it extends, most derived first; cycles are errors."""
    chain: list[Source] = []
    seen: list[Path] = []
    current: Path | None = path
    while current is not None:
        resolved = current.resolve()
        source = read_source(current)
        if resolved in seen:
            names = " -> ".join(display_name(p) for p in [*seen, resolved])
            prev = chain[-1]
            pos = prev.positions.get(("extends",))
            raise ProfileError(
                [
                    Diagnostic(
                        prev.display,
                        "extends",
                        f"extends cycle: {names}",
                        line=pos.line if pos else None,
                        col=pos.col if pos else None,
                    )
                ]
            )
        seen.append(resolved)
        chain.append(source)
        parent = source.data.get("extends")
        if parent is None:
            current = None
        elif not isinstance(parent, str) or not parent:
            current = None  # the schema reports the wrong type
        else:
            target = current.parent / parent
            if not target.is_file():
                pos = source.positions.get(("extends",))
                raise ProfileError(
                    [
                        Diagnostic(
                            source.display,
                            "extends",
                            "extended profile not found",
                            line=pos.line if pos else None,
                            col=pos.col if pos else None,
                            got=repr(parent),
                            hint=f"looked for {display_name(target)}",
                        )
                    ]
                )
            current = target
    return chain


def placeholder(name: str) -> str:
    """Stands in for an unset variable when only the profile's shape is checked.

    Long enough to satisfy secret length rules, recognisable in `engine show`.
    """
    return f"<unset:{name}>".ljust(64, "-")


def interpolate(
    text: str, environ: Mapping[str, str], *, require_env: bool = True
) -> tuple[str, tuple[str, ...]]:
    """Expand `${VAR}` and `${VAR:-default}`; `$${` is a literal `${`.

    Raises `InterpolationError` naming the variable when one is unset and has no default,
    unless `require_env` is false (validation without `--check-env`): then a placeholder.
    """
    used: list[str] = []

    def replace(match: re.Match[str]) -> str:
        if match.group(1):
            return "${" + match.group(2) + "}"
        body = match.group(2)
        name, sep, default = body.partition(":-")
        if not _VAR_NAME.match(name):
            raise InterpolationError(name, f"invalid variable reference '${{{body}}}'")
        value = environ.get(name)
        if value is None or (sep and value == ""):
            if sep:
                used.append(f"{name} (unset, default used)")
                return default
            if not require_env:
                used.append(name + UNSET)
                return placeholder(name)
            raise InterpolationError(name, f"environment variable {name} is not set")
        used.append(name)
        return value

    result = _VAR.sub(replace, text)
    return result, tuple(used)


class InterpolationError(Exception):
    def __init__(self, variable: str, message: str) -> None:
        super().__init__(message)
        self.variable = variable
        self.message = message


def iter_strings(node: Any, path: KeyPath = ()) -> Iterator[tuple[KeyPath, str]]:
    if isinstance(node, str):
        yield path, node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from iter_strings(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from iter_strings(value, (*path, index))


def set_at(node: Any, path: KeyPath, value: Any) -> None:
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value


def delete_at(node: Any, path: KeyPath) -> None:
    for key in path[:-1]:
        node = node[key]
    del node[path[-1]]


def load(path: Path, environ: Mapping[str, str], *, require_env: bool = True) -> Loaded:
    """Read `path` and its `extends` chain, merge, interpolate; raise `ProfileError`."""
    chain = read_chain(path)
    data: dict[str, Any] = {}
    for source in reversed(chain):
        data = merge(data, source.data)
    data.pop("extends", None)
    if "extends" in chain[0].data:
        data["extends"] = chain[0].data["extends"]
    loaded = Loaded(data=data, sources=chain)
    problems: list[Diagnostic] = []
    for key_path, text in list(iter_strings(data)):
        if "${" not in text:
            continue
        try:
            value, used = interpolate(text, environ, require_env=require_env)
        except InterpolationError as exc:
            problems.append(loaded.diagnostic(key_path, exc.message))
            continue
        set_at(data, key_path, value)
        loaded.env_paths[key_path] = used
    if problems:
        raise ProfileError(problems)
    return loaded
