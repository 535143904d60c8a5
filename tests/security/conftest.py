"""The end-to-end mesh of tests/e2e, for the attacker tests that call it directly (test_auth_grpc, test_auth_rest).

Its fixtures are defined in tests/e2e/conftest.py, whose fixtures only reach tests under tests/e2e; imported
here they are this folder's own, so tests here start one mesh of their own (once per process, on the "e2e"
xdist group's worker).
"""

from e2e.conftest import mesh, mesh_stack

__all__ = ["mesh", "mesh_stack"]
