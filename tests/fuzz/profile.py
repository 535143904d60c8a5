"""The Hypothesis settings of the fuzz tests, chosen by ``KASSA_FUZZ``.

* ``short`` (the default, run by ``make test``): ``KASSA_FUZZ_EXAMPLES`` (default 4) examples per RPC and
  transport, derandomized when ``CI`` is set, so the fuzz tests take well under a minute;
* ``long`` (``make fuzz``): ``KASSA_FUZZ_EXAMPLES`` (default 500) examples per RPC and transport.

Outside CI, failing examples are kept in ``.hypothesis/fuzz`` (git-ignored) and replayed first on the next
run. Applied per test (``@FUZZ_SETTINGS``), never as the process-wide profile, so other Hypothesis tests
in the same worker keep their own settings.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, Phase, settings
from hypothesis.database import DirectoryBasedExampleDatabase

__all__ = ["FUZZ_SETTINGS", "PROFILE"]

PROFILE = os.environ.get("KASSA_FUZZ", "short")
_CI = bool(os.environ.get("CI"))
_DEFAULT_EXAMPLES = {"short": 4, "long": 500}

settings.register_profile(
    "kassa-fuzz",
    max_examples=int(os.environ.get("KASSA_FUZZ_EXAMPLES", _DEFAULT_EXAMPLES.get(PROFILE, 4))),
    deadline=None,
    derandomize=_CI and PROFILE == "short",
    database=None if _CI and PROFILE == "short" else DirectoryBasedExampleDatabase(".hypothesis/fuzz"),
    suppress_health_check=list(HealthCheck),
    phases=(Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink),
    print_blob=True,
    report_multiple_bugs=False,
)
FUZZ_SETTINGS = settings.get_profile("kassa-fuzz")
