"""buf guards the proto contract: the protos are formatted, and compatible with the last release's image.

``proto/baseline.binpb`` is that image (``make proto-baseline`` at a release). The check is shown to bite: a
copy of the protos with one field's type changed is refused against the same baseline.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
BUF = str(Path(sys.executable).with_name("buf"))
BASELINE = ROOT / "proto" / "baseline.binpb"


@pytest.fixture(scope="module")
def workspace() -> Path:
    """The repo's buf workspace, with google/api copied in (make third_party) as make lint has it."""
    if not (ROOT / "third_party" / "proto" / "google" / "api" / "http.proto").exists():
        subprocess.run(["make", "-s", "third_party"], cwd=ROOT, check=True, capture_output=True, timeout=300)
    return ROOT


def _buf(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([BUF, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def test_the_protos_are_formatted_and_compatible_with_the_baseline(workspace: Path) -> None:
    assert BASELINE.stat().st_size > 0
    formatted = _buf("format", "--diff", "--exit-code", "proto", cwd=workspace)
    assert formatted.returncode == 0, formatted.stdout + formatted.stderr
    breaking = _buf("breaking", "proto", "--against", str(BASELINE), cwd=workspace)
    assert breaking.returncode == 0, breaking.stdout + breaking.stderr


def test_a_changed_field_type_is_a_breaking_change(workspace: Path, tmp_path: Path) -> None:
    for part in ("buf.yaml", "proto", "third_party"):
        source = workspace / part
        if source.is_dir():
            shutil.copytree(source, tmp_path / part)
        else:
            shutil.copy(source, tmp_path / part)
    money = tmp_path / "proto" / "kassa" / "common" / "v1" / "money.proto"
    text = money.read_text()
    assert "int64 amount_minor = 2;" in text
    money.write_text(text.replace("int64 amount_minor = 2;", "int32 amount_minor = 2;"))
    breaking = _buf("breaking", "proto", "--against", str(BASELINE), cwd=tmp_path)
    assert breaking.returncode != 0
    assert "amount_minor" in breaking.stdout + breaking.stderr
