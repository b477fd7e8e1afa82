"""The one YAML loader of the tool: config files, screening scripts and any other YAML it reads.

Why it lives here: every package that reads YAML (`outreach` for config, `campaigns` for the demo, `dialogs`
for scripts) may import `dialogs` under the dependency direction `outreach -> campaigns -> dialogs`, and
`dialogs` is the lowest of them, so the loader sits in the lowest package that all its users can reach.
It imports nothing of the project.

Limits, each a `YamlError` with the line where it was exceeded:
- size: a file larger than `max_bytes` is refused before it is read;
- depth: nesting deeper than `max_depth` (PyYAML's composer recurses and would die in a RecursionError);
- alias expansion: values reached through aliases count; past `max_aliased` beyond the document's own nodes the document
  is refused (a 600-byte "billion laughs" document would otherwise expand to gigabytes);
- recursive aliases (an alias inside the node it names) and characters YAML forbids (NUL) are errors;
- values that cannot be built (a 5,000-digit integer) are errors, never exceptions from deep inside.

`load()` returns plain data with a map of key path -> 1-based line, and the duplicate keys it found (the
caller decides whether a duplicate is an error). Dates stay text: callers validate them with their own
messages (`2026-02-30` is a bad holiday, not a crash).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.reader import ReaderError

__all__ = ["DEFAULT_MAX_BYTES", "Duplicate", "Loaded", "YamlError", "load", "read_text"]

DEFAULT_MAX_BYTES = 1 << 20  # 1 MiB: the shipped script is ~15 KB, a config file a few KB
DEFAULT_MAX_DEPTH = 64
DEFAULT_MAX_ALIASED = 20_000  # values reached through aliases, beyond the document's own nodes

_BOOL_TAG = "tag:yaml.org,2002:bool"
_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


class YamlError(ValueError):
    """A YAML file cannot be used. `line` is 1-based (0 when there is no line, e.g. a missing file)."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}" if line else message)
        self.line = line
        self.message = message


@dataclass(frozen=True, slots=True)
class Duplicate:
    """A key given twice in one mapping: where, and where it was first."""

    path: tuple[str, ...]  # of the mapping
    key: str
    line: int
    first_line: int


@dataclass(frozen=True, slots=True)
class Loaded:
    data: Any
    lines: dict[tuple[str, ...], int]
    duplicates: list[Duplicate]


def read_text(path: str | os.PathLike[str], *, max_bytes: int = DEFAULT_MAX_BYTES, what: str = "file") -> tuple[bytes, str]:
    """The bytes and UTF-8 text of a YAML file. Raises YamlError (line 0 unless the encoding breaks on a line)."""
    p = Path(path)
    try:
        if p.is_dir():
            raise YamlError(0, f"the {what} is a folder, not a file")
        size = p.stat().st_size
        if size > max_bytes:
            raise YamlError(0, f"the {what} is too large ({size:,} bytes; at most {max_bytes:,})")
        with p.open("rb") as f:
            raw = f.read(max_bytes + 1)
    except FileNotFoundError as exc:
        raise YamlError(0, f"{what} not found") from exc
    except OSError as exc:
        raise YamlError(0, f"cannot read the {what}: {exc.strerror or exc}") from exc
    if len(raw) > max_bytes:
        raise YamlError(0, f"the {what} is too large (more than {max_bytes:,} bytes)")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        hint = "; it looks like UTF-16, save it as UTF-8" if raw[:2] in (b"\xff\xfe", b"\xfe\xff") else ""
        raise YamlError(line, f"not UTF-8 text ({exc.reason} at byte {exc.start}){hint}") from exc
    return raw, text.removeprefix("\ufeff")


class _DepthLimitedLoader(yaml.SafeLoader):
    """SafeLoader whose composer refuses nesting deeper than `max_depth`."""

    max_depth = DEFAULT_MAX_DEPTH

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self.node_count = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        self._depth += 1
        self.node_count += 1
        try:
            if self._depth > self.max_depth:
                mark = self.peek_event().start_mark
                raise YamlError(mark.line + 1, f"nested deeper than {self.max_depth} levels")
            return Composer.compose_node(self, parent, index)
        finally:
            self._depth -= 1


def _compose(text: str, max_depth: int) -> tuple[yaml.Node | None, int]:
    loader_cls = type("_Loader", (_DepthLimitedLoader,), {"max_depth": max_depth})
    loader: _DepthLimitedLoader | None = None
    try:
        loader = loader_cls(text)  # the reader checks every character here
        return loader.get_single_node(), loader.node_count
    except ReaderError as exc:
        line = text[: exc.position].count("\n") + 1
        char = chr(exc.character) if isinstance(exc.character, int) else str(exc.character)
        raise YamlError(line, f"character {char!r} is not allowed in YAML text") from exc
    except RecursionError as exc:  # pragma: no cover - the depth limit comes first
        raise YamlError(0, f"nested deeper than {max_depth} levels") from exc
    finally:
        if loader is not None:
            loader.dispose()


def load(
    text: str,
    *,
    max_depth: int = DEFAULT_MAX_DEPTH,
    max_aliased: int = DEFAULT_MAX_ALIASED,
    yaml12_bools: bool = False,
) -> Loaded:
    """Parse one YAML document within the limits.

    Keys are text. `yaml12_bools`: only true/false are booleans (yes/no/on/off stay words).
    Raises YamlError for an exceeded limit or an unbuildable value, yaml.MarkedYAMLError for a syntax error.
    """
    root, composed = _compose(text, max_depth)
    max_nodes = composed + max_aliased
    lines: dict[tuple[str, ...], int] = {}
    duplicates: list[Duplicate] = []
    constructor = yaml.SafeLoader("")
    open_nodes: set[int] = set()  # collections being walked: an alias back to one is a cycle
    budget = [max_nodes]

    def spend(n: yaml.Node) -> None:
        budget[0] -= 1
        if budget[0] < 0:
            raise YamlError(
                n.start_mark.line + 1,
                f"YAML aliases ('*') expand the document to more than {max_aliased:,} extra values (aliases "
                "repeated inside each other); write the values out instead",
            )

    def scalar(n: yaml.ScalarNode, path: tuple[str, ...]) -> Any:
        where = f"'{'.'.join(path)}': " if path else ""
        if _CONTROL_RE.search(n.value):
            raise YamlError(n.start_mark.line + 1, f"{where}the value holds a control character (such as NUL)")
        if n.tag == _TIMESTAMP_TAG:
            return n.value
        if yaml12_bools and n.tag == _BOOL_TAG and n.value.lower() not in ("true", "false"):
            return n.value
        try:
            return constructor.construct_object(n, deep=True)
        except (ValueError, OverflowError) as exc:
            raise YamlError(n.start_mark.line + 1, f"{where}cannot read the value: {exc}") from exc

    def walk(n: yaml.Node | None, path: tuple[str, ...]) -> Any:
        if n is None:
            return None
        spend(n)
        lines.setdefault(path, n.start_mark.line + 1)
        if isinstance(n, (yaml.MappingNode, yaml.SequenceNode)):
            if id(n) in open_nodes:
                raise YamlError(n.start_mark.line + 1, "a YAML alias refers to itself (a recursive '*' alias)")
            open_nodes.add(id(n))
            try:
                if isinstance(n, yaml.MappingNode):
                    out: dict[str, Any] = {}
                    for k, v in n.value:
                        key = str(k.value) if isinstance(k, yaml.ScalarNode) else f"<{k.id} at line {k.start_mark.line + 1}>"
                        line = k.start_mark.line + 1
                        if key in out:
                            duplicates.append(Duplicate(path, key, line, lines[(*path, key)]))
                            continue
                        lines[(*path, key)] = line
                        out[key] = walk(v, (*path, key))
                    return out
                return [walk(v, (*path, str(i))) for i, v in enumerate(n.value)]
            finally:
                open_nodes.discard(id(n))
        assert isinstance(n, yaml.ScalarNode)
        return scalar(n, path)

    try:
        data = walk(root, ())
    except RecursionError as exc:  # pragma: no cover - the depth limit comes first
        raise YamlError(0, f"nested deeper than {max_depth} levels") from exc
    return Loaded(data, lines, duplicates)


def describe_syntax_error(exc: yaml.MarkedYAMLError) -> tuple[int, str]:
    """(line, 'YAML syntax error (column C): problem') of a PyYAML syntax error."""
    mark = exc.problem_mark or exc.context_mark
    line = mark.line + 1 if mark else 0
    col = f" at line {line}, column {mark.column + 1}" if mark else ""
    return line, f"YAML syntax error{col}: {exc.problem or exc}"

