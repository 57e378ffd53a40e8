"""Suite-wide settings.

Property-based tests run derandomized (a fixed sequence of examples) and keep no example
database: the suite's result is the same on every run and machine, and nothing is written into
the checkout (Hypothesis would otherwise create `.hypothesis/`). A long randomized run is
opt-in: ``HYPOTHESIS_PROFILE=random`` (and, for the ONNX fuzzer, ``INITLINT_FUZZ_SEED=random``).
"""

from __future__ import annotations

import os

try:
    from hypothesis import settings
except ImportError:  # the property-based tests skip themselves
    settings = None

if settings is not None:
    settings.register_profile("initlint", derandomize=True, database=None, deadline=None)
    settings.register_profile("random", derandomize=False, database=None, deadline=None)
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "initlint"))

# The probe runs in a child process with hard limits by default (initlint.probe.isolated); each
# child imports torch again, seconds per probe. The suite probes hundreds of models, so it runs
# them in-process; tests/test_probe_isolation.py runs the default path.
os.environ.setdefault("INITLINT_PROBE_INPROCESS", "1")
