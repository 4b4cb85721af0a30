"""What the integration suites share: a free loopback port, and the one way
each suite runs its test cases and reports.

run() prints "N passed, M failed" last (tests/run.sh reads it) and returns
the exit status: non-zero when any test failed, errored or was skipped (a
skip is never counted as a pass), or when none ran."""
import os
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from harness import free_port  # noqa: E402,F401  (the suites take it from here)


def run(*cases):
    loader = unittest.TestLoader()
    suite = unittest.TestSuite(loader.loadTestsFromTestCase(c) for c in cases)
    result = unittest.TextTestRunner(stream=sys.stdout, verbosity=2).run(suite)
    bad = len(result.failures) + len(result.errors) + len(result.skipped)
    print("%d passed, %d failed" % (max(result.testsRun - bad, 0), bad))
    return 1 if bad or result.testsRun == 0 else 0
