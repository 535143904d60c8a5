"""``kassa trace ORDER_OR_SESSION_ID``: the span tree of a checkout, read from the local JSON-lines trace files.

Every process of a local mesh writes its spans to ``<KASSA_TRACE_DIR>/<service>-<pid>.jsonl`` (infra.tracing;
``kassa up`` puts them in ``.kassa/stack/traces``). :func:`find_traces` finds the traces that have a span naming
the id (``kassa.order_id``, ``kassa.session_id``, ``kassa.cart_id``, ``kassa.payment_id``; or the trace id itself)
and returns each as a tree:

``list[TraceTree]``, newest first; ``TraceTree(trace_id, start_ns, duration_ms, span_count, services, roots)``,
``roots: list[SpanNode]``; ``SpanNode(span_id, parent_id, service, name, kind, start_ns, end_ns, offset_ms,
duration_ms, status, status_message, attributes, missing_parent, children: list[SpanNode])``, children by start
time. ``offset_ms`` is from the trace's first span. ``to_dict()`` on either gives the same as JSON-ready dicts.
:func:`render` prints it as ``kassa trace`` does.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infra.tracing import DEFAULT_TRACE_DIR, ID_KEYS

__all__ = ["SpanNode", "TraceTree", "add_parser", "find_traces", "render", "trace_dir"]

_ID_ATTRIBUTES = tuple(f"kassa.{key}" for key in ID_KEYS)


@dataclass
class SpanNode:
    span_id: str
    parent_id: str | None
    service: str
    name: str
    kind: str
    start_ns: int
    end_ns: int
    offset_ms: float
    duration_ms: float
    status: str
    status_message: str
    attributes: dict[str, Any]
    # The span names a parent that is not in the files (not flushed yet, or its process was killed).
    missing_parent: bool = False
    children: list[SpanNode] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "span_id": self.span_id,
            "parent_id": self.parent_id,
            "service": self.service,
            "name": self.name,
            "kind": self.kind,
            "start_ns": self.start_ns,
            "end_ns": self.end_ns,
            "offset_ms": self.offset_ms,
            "duration_ms": self.duration_ms,
            "status": self.status,
            "status_message": self.status_message,
            "attributes": self.attributes,
            "missing_parent": self.missing_parent,
            "children": [child.to_dict() for child in self.children],
        }

    def walk(self) -> Iterator[SpanNode]:
        yield self
        for child in self.children:
            yield from child.walk()


@dataclass
class TraceTree:
    trace_id: str
    start_ns: int
    duration_ms: float
    span_count: int
    services: list[str]
    roots: list[SpanNode]

    def to_dict(self) -> dict[str, Any]:
        return {
            "trace_id": self.trace_id,
            "start_ns": self.start_ns,
            "duration_ms": self.duration_ms,
            "span_count": self.span_count,
            "services": self.services,
            "roots": [root.to_dict() for root in self.roots],
        }

    def spans(self) -> Iterator[SpanNode]:
        for root in self.roots:
            yield from root.walk()


def trace_dir(given: str | Path | None = None) -> Path:
    """``given``, else ``$KASSA_TRACE_DIR``, else ``.kassa/stack/traces``."""
    return Path(given or os.environ.get("KASSA_TRACE_DIR") or DEFAULT_TRACE_DIR).expanduser()


def _records(directory: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """(raw line, record) of every span in the directory's files; a torn last line is skipped."""
    for path in sorted(directory.glob("*.jsonl")):
        try:
            with path.open(encoding="utf-8") as lines:
                for line in lines:
                    try:
                        record = json.loads(line)
                    except ValueError:
                        continue
                    if isinstance(record, dict) and record.get("trace_id") and record.get("span_id"):
                        yield line, record
        except OSError:
            continue


def _names(record: dict[str, Any], key: str) -> bool:
    if record.get("trace_id") == key:
        return True
    attributes = record.get("attributes") or {}
    return any(attributes.get(name) == key for name in _ID_ATTRIBUTES)


def find_traces(key: str, directory: str | Path | None = None) -> list[TraceTree]:
    """The traces (newest first) with a span naming ``key`` (an order, session, cart or payment id, or a trace id)."""
    folder = trace_dir(directory)
    key = key.strip()
    if not key or not folder.is_dir():
        return []
    wanted = {record["trace_id"] for line, record in _records(folder) if key in line and _names(record, key)}
    if not wanted:
        return []
    by_trace: dict[str, list[dict[str, Any]]] = {}
    for _line, record in _records(folder):
        if record["trace_id"] in wanted:
            by_trace.setdefault(record["trace_id"], []).append(record)
    trees = [_tree(trace_id, records) for trace_id, records in by_trace.items()]
    trees.sort(key=lambda tree: tree.start_ns, reverse=True)
    return trees


def _tree(trace_id: str, records: Iterable[dict[str, Any]]) -> TraceTree:
    unique = {str(r["span_id"]): r for r in records}
    start = min(int(r.get("start_ns") or 0) for r in unique.values())
    end = max(int(r.get("end_ns") or r.get("start_ns") or 0) for r in unique.values())
    nodes: dict[str, SpanNode] = {}
    for span_id, r in unique.items():
        begun = int(r.get("start_ns") or 0)
        ended = int(r.get("end_ns") or begun)
        nodes[span_id] = SpanNode(
            span_id=span_id,
            parent_id=r.get("parent_id"),
            service=str(r.get("service") or ""),
            name=str(r.get("name") or ""),
            kind=str(r.get("kind") or ""),
            start_ns=begun,
            end_ns=ended,
            offset_ms=round((begun - start) / 1e6, 3),
            duration_ms=round((ended - begun) / 1e6, 3),
            status=str(r.get("status") or "UNSET"),
            status_message=str(r.get("status_message") or ""),
            attributes=dict(r.get("attributes") or {}),
        )
    roots: list[SpanNode] = []
    for node in nodes.values():
        parent = nodes.get(node.parent_id) if node.parent_id else None
        if parent is None:
            node.missing_parent = node.parent_id is not None
            roots.append(node)
        else:
            parent.children.append(node)
    for node in nodes.values():
        node.children.sort(key=lambda child: child.start_ns)
    roots.sort(key=lambda root: root.start_ns)
    return TraceTree(
        trace_id=trace_id,
        start_ns=start,
        duration_ms=round((end - start) / 1e6, 3),
        span_count=len(nodes),
        services=sorted({node.service for node in nodes.values()}),
        roots=roots,
    )


def render(trees: Iterable[TraceTree]) -> str:
    """The trees as text: one line per span, indented under its parent, with start offset, duration and status."""
    out: list[str] = []
    for tree in trees:
        out.append(
            f"trace {tree.trace_id}  {tree.span_count} spans  {tree.duration_ms:.1f} ms  "
            f"services: {', '.join(tree.services)}"
        )
        out.append(f"{'start ms':>10} {'duration':>10}  {'status':<6} span")
        for root in tree.roots:
            _render_node(root, 0, out)
        out.append("")
    return "\n".join(out)


def _render_node(node: SpanNode, depth: int, out: list[str]) -> None:
    status = {"OK": "ok", "UNSET": "ok", "ERROR": "ERROR"}.get(node.status, node.status)
    ids = " ".join(f"{name[6:]}={node.attributes[name]}" for name in _ID_ATTRIBUTES if name in node.attributes)
    detail = f" ({node.status_message})" if node.status_message else ""
    orphan = " [parent not found]" if node.missing_parent else ""
    out.append(
        f"{node.offset_ms:>10.1f} {node.duration_ms:>8.1f}ms  {status:<6} {'  ' * depth}"
        f"{node.service}: {node.name}{detail}{orphan}{'  ' + ids if ids else ''}"
    )
    for child in node.children:
        _render_node(child, depth + 1, out)


def _cmd_trace(args: argparse.Namespace) -> int:
    folder = trace_dir(args.dir)
    trees = find_traces(args.id, folder)
    if not trees:
        sys.stdout.write(f"no trace names {args.id!r} in {folder}\n")
        return 1
    if args.json:
        sys.stdout.write(json.dumps([tree.to_dict() for tree in trees], indent=2) + "\n")
    else:
        sys.stdout.write(render(trees))
    return 0


def add_parser(sub: Any) -> None:
    """``kassa trace`` on the CLI's subcommands."""
    cmd = sub.add_parser("trace", help="print the span tree (with timings) of an order's or session's checkout")
    cmd.add_argument("id", metavar="ORDER_OR_SESSION_ID", help="an order, session, cart or payment id, or a trace id")
    cmd.add_argument("--dir", help=f"the trace files (default: $KASSA_TRACE_DIR or {DEFAULT_TRACE_DIR})")
    cmd.add_argument("--json", action="store_true", help="the trees as JSON")
    cmd.set_defaults(func=_cmd_trace)
