"""Hostile inputs for the fuzz tests of the logic cores (tests only: needs hypothesis).

Every node's message handling lives in a plain-Python core; its fuzz test feeds it what a
broken or hostile publisher could send — huge and empty strings, NaN/inf, negative or
enormous durations, unknown enum values, stale or future stamps, out-of-order indices —
and checks that no exception escapes and the state stays valid.

:data:`FUZZ` is the shared hypothesis profile: no deadline (a busy CI machine), no example
database (nothing written into the source tree) and, by default, derandomized, so the suite
runs the same examples every time. For a deeper search::

    DROID_FUZZ_RANDOM=1 DROID_FUZZ_EXAMPLES=5000 ./run_tests.sh src/droid_brain/test/test_brain_fuzz.py
"""

from __future__ import annotations

import math
import os
import tempfile

# Hypothesis writes a cache where it runs (here: the package's source directory) unless
# told otherwise; run_tests.sh sets this too.
os.environ.setdefault('HYPOTHESIS_STORAGE_DIRECTORY',
                      os.path.join(tempfile.gettempdir(), 'droid-hypothesis'))

from hypothesis import HealthCheck, settings  # noqa: E402
from hypothesis import strategies as st

EXAMPLES = int(os.environ.get('DROID_FUZZ_EXAMPLES', '150'))

FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                derandomize=not os.environ.get('DROID_FUZZ_RANDOM'),
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.filter_too_much])


def fuzz(examples: int | None = None):
    """The :data:`FUZZ` profile, with ``examples`` scaled like DROID_FUZZ_EXAMPLES."""
    if examples is None:
        return FUZZ
    return settings(FUZZ, max_examples=max(1, examples * EXAMPLES // 150))


EDGE_FLOATS = (0.0, -0.0, 1.0, -1.0, 0.5, 1e-300, 5e-324, -5e-324, 1e300, -1e300,
               1.7976931348623157e308, float('nan'), float('inf'), float('-inf'),
               2.0 ** 31, 2.0 ** 63, 4294967296.0)


def floats() -> st.SearchStrategy:
    """Any float: NaN, +-inf, signed zeros, subnormals, huge."""
    return st.one_of(st.sampled_from(EDGE_FLOATS), st.floats(allow_nan=True,
                                                             allow_infinity=True))


def durations() -> st.SearchStrategy:
    """Durations in seconds: sensible ones, negative, zero, enormous, NaN, inf."""
    return st.one_of(st.floats(0.0, 30.0), floats())


def ints() -> st.SearchStrategy:
    """Enum values and indices: known small ones, unknown, negative, beyond 64 bits."""
    return st.one_of(st.integers(-3, 12), st.integers(-2 ** 70, 2 ** 70),
                     st.sampled_from((255, 256, 2 ** 31 - 1, 2 ** 32, -2 ** 63)))


def texts(max_huge: int = 200_000) -> st.SearchStrategy:
    """Empty, blank, ordinary, control characters and surrogates, and huge strings."""
    return st.one_of(
        st.sampled_from(('', ' ', '\n\t ', '\x00', '\u202e', '\ud800', 'a' * 5000)),
        st.text(max_size=40),
        st.builds(lambda s, n: (s or 'x') * n, st.text(min_size=1, max_size=3),
                  st.integers(min(1000, max_huge), max_huge)))


def ids() -> st.SearchStrategy:
    """Conversation ids: a few real-looking ones (so events collide), empty, hostile."""
    return st.one_of(st.sampled_from(('', 'c1', 'c2', 'c3', '1a2b3c4d5e6f')),
                     texts(max_huge=5000))


def stamps(base: float = 1000.0) -> st.SearchStrategy:
    """Message stamps around ``base``: in order, stale, in the future, zero, hostile."""
    return st.one_of(st.floats(base - 50.0, base + 50.0), st.sampled_from((0.0, base)),
                     floats())


def finite(x) -> bool:
    try:
        return math.isfinite(float(x))
    except (TypeError, ValueError, OverflowError):
        return False
