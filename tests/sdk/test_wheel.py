"""`make sdk` builds kassa-client as a wheel of its own that works without the rest of the repository.

The wheel is installed into an empty folder and imported by a Python that has no site initialisation (so
neither this repository's editable install nor its gen/ is on the path): only the wheel's own files and the
third-party dependencies (grpcio, protobuf, tenacity) are importable.
"""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

import kassa_client

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import sys, kassa_client
from kassa.checkout.v1 import cart_service_pb2
from kassa.common.v1 import errors_pb2
target = sys.argv[1]
assert kassa_client.__file__.startswith(target), kassa_client.__file__
assert cart_service_pb2.__file__.startswith(target), cart_service_pb2.__file__
client = kassa_client.KassaClient("127.0.0.1:1", token="t")
client.close()
reasons = [v.name for v in errors_pb2.ErrorReason.DESCRIPTOR.values if v.number]
assert all(kassa_client.error_class(r).reason == r for r in reasons)
print("ok", kassa_client.__version__)
"""


def test_the_wheel_installs_and_imports_on_its_own(tmp_path: Path) -> None:
    subprocess.run(["make", "-s", "sdk"], cwd=ROOT, check=True, capture_output=True, timeout=300)
    wheel = ROOT / "dist" / f"kassa_client-{kassa_client.__version__}-py3-none-any.whl"
    names = zipfile.ZipFile(wheel).namelist()
    assert "kassa_client/aio.py" in names
    assert "kassa/checkout/v1/checkout_service_pb2_grpc.py" in names
    assert not any(n.startswith(("infra/", "gateway/", "checkout/")) for n in names)
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target), str(wheel)],
        check=True,
        timeout=120,
    )
    deps = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    probe = subprocess.run(
        [sys.executable, "-S", "-c", PROBE, str(target)],
        env={"PYTHONPATH": ":".join([str(target), *deps])},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip() == f"ok {kassa_client.__version__}"
