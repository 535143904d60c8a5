"""Every ErrorInfo reason Kassa can emit is a value of kassa.common.v1.ErrorReason (DESIGN.md §2).

Clients branch on the reason, and the OpenAPI document and the client SDK list the enum's values, so a
reason that is only a string in some module would be a contract change no one reviewed. The reasons are
found three ways: the ``kernel.errors.Reason`` constants, every domain error's default, and a scan of the
source of the kernel, infra, devstack, the gateway and the seven services for reasons written as literals or
as ``Reason.X``.
"""

from __future__ import annotations

import ast
import inspect
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from helpers import KASSA_PACKAGES

from gateway import status as gw_status
from infra import auth
from kassa.common.v1 import errors_pb2
from kernel import errors

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
SCANNED = KASSA_PACKAGES
ENUM = {v.name for v in errors_pb2.ErrorReason.DESCRIPTOR.values} - {"ERROR_REASON_UNSPECIFIED"}


def _reason_constants() -> dict[str, str]:
    return {k: v for k, v in vars(errors.Reason).items() if k.isupper()}


def test_reason_constants_are_exactly_the_enum_values() -> None:
    constants = _reason_constants()
    assert all(name == value for name, value in constants.items())
    assert set(constants.values()) == ENUM


def test_every_domain_error_defaults_to_an_enum_reason() -> None:
    classes = [
        c for module in (errors, auth) for _, c in inspect.getmembers(module, inspect.isclass)
        if issubclass(c, errors.DomainError)
    ]  # fmt: skip
    assert auth.Unauthenticated in classes
    assert {c.default_reason for c in classes} <= ENUM
    assert auth.Unauthenticated.default_reason == "UNAUTHENTICATED"


@pytest.mark.parametrize("code", list(grpc.StatusCode), ids=lambda c: c.name)
def test_a_bare_status_gets_an_enum_reason(code: grpc.StatusCode) -> None:
    assert gw_status.reason_for_code(code) in ENUM


def _sources() -> Iterator[Path]:
    for package in SCANNED:
        yield from sorted((ROOT / package).rglob("*.py"))


def _emitted(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """(line, reason) for each ``Reason.X``, ``reason="X"``, ``default_reason = "X"`` and make_status(…, "X")."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name | ast.Attribute):
            owner = node.value.attr if isinstance(node.value, ast.Attribute) else node.value.id
            if owner == "Reason":
                yield node.lineno, node.attr
        elif isinstance(node, ast.Call):
            for kw in node.keywords:
                if kw.arg == "reason" and isinstance(kw.value, ast.Constant) and isinstance(kw.value.value, str):
                    yield kw.value.lineno, kw.value.value
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if name == "make_status" and len(node.args) >= 3 and isinstance(node.args[2], ast.Constant):
                yield node.lineno, str(node.args[2].value)
        elif (
            isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Constant)
            and any(isinstance(t, ast.Name) and t.id == "default_reason" for t in node.targets)
        ):
            yield node.lineno, str(node.value.value)


def test_every_reason_in_the_source_is_in_the_enum() -> None:
    found: dict[str, str] = {}
    for path in _sources():
        for line, reason in _emitted(ast.parse(path.read_text(), str(path))):
            found.setdefault(reason, f"{path.relative_to(ROOT)}:{line}")
    # The scan does see the reasons only the gateway emits.
    assert {"RATE_LIMITED", "UNIMPLEMENTED", "INTERNAL", "OUT_OF_STOCK"} <= found.keys()
    unknown = {reason: where for reason, where in found.items() if reason not in ENUM}
    assert not unknown, f"reasons missing from kassa.common.v1.ErrorReason: {unknown}"


def test_the_scan_catches_a_literal_reason() -> None:
    tree = ast.parse('make_status(code, "msg", "AT_CAPACITY")\nraise X("m", reason="NOPE")\n')
    assert {r for _, r in _emitted(tree)} == {"AT_CAPACITY", "NOPE"}
