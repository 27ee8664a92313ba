#!/usr/bin/env python3
"""Runs Strait's end-to-end suite: every tests/e2e/test_*.py against the binaries in a build
folder. Prints one line per test, the logs of the processes of a failed test, and closes
with "e2e (BUILD_DIR): N passed, N failed"; writes "N M" to BUILD_DIR/e2e.counts; exits
non-zero on any failure.

  python3 tests/e2e/run.py --bin build [-k SUBSTRING ...] [--keep]
"""
import argparse
import os
import shutil
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import harness  # noqa: E402


def is_sanitized(path):
    """True for a binary built with -fsanitize=address (looks for the runtime's symbol)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return False
    return b"__asan_init" in data or b"__ubsan_handle" in data


class Result(unittest.TestResult):
    def __init__(self, stream):
        super().__init__()
        self.stream = stream
        self.passed = 0
        self.failed = 0
        self._t0 = {}

    def startTest(self, test):
        super().startTest(test)
        self._t0[test.id()] = time.monotonic()

    def _line(self, test, word):
        t0 = self._t0.get(test.id())
        dt = " (%.2fs)" % (time.monotonic() - t0) if t0 is not None else ""
        self.stream.write("%-4s %s%s\n" % (word, _short(test), dt))
        self.stream.flush()

    def addSuccess(self, test):
        super().addSuccess(test)
        self.passed += 1
        self._line(test, "ok")

    def _bad(self, test, err, word):
        self.failed += 1
        self._line(test, word)
        self.stream.write(self._exc_info_to_string(err, test).rstrip() + "\n")
        dump = getattr(test, "dump_logs", None)
        if dump:
            try:
                self.stream.write(dump() + "\n")
            except Exception as e:  # noqa: BLE001
                self.stream.write("(could not print logs: %r)\n" % (e,))
        self.stream.write("\n")
        self.stream.flush()

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self._bad(test, err, "FAIL")

    def addError(self, test, err):
        super().addError(test, err)
        self._bad(test, err, "ERR")

    def addSubTest(self, test, subtest, err):
        super().addSubTest(test, subtest, err)
        if err is not None:
            self._bad(subtest, err, "FAIL")

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        self.stream.write("skip %s: %s\n" % (_short(test), reason))

    def addUnexpectedSuccess(self, test):
        super().addUnexpectedSuccess(test)
        self.failed += 1
        self._line(test, "FAIL")


def _short(test):
    tid = test.id() if hasattr(test, "id") else str(test)
    return tid


def _iter_tests(suite):
    for t in suite:
        if isinstance(t, unittest.TestSuite):
            yield from _iter_tests(t)
        else:
            yield t


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", default="build", help="folder with strait-controller and strait-dataplane")
    ap.add_argument("-k", action="append", default=[], help="only tests whose id contains this")
    ap.add_argument("--keep", action="store_true", help="keep the temp dirs even when all pass")
    args = ap.parse_args()

    bin_dir = os.path.abspath(args.bin)
    harness.BIN = bin_dir
    counts_path = os.path.join(bin_dir, "e2e.counts")
    missing = [b for b in ("strait-controller", "strait-dataplane")
               if not os.access(os.path.join(bin_dir, b), os.X_OK)]
    if missing:
        print("e2e: missing binaries in %s: %s" % (bin_dir, ", ".join(missing)))
        print("e2e (%s): 0 passed, 1 failed" % args.bin)
        os.makedirs(bin_dir, exist_ok=True)
        with open(counts_path, "w") as f:
            f.write("0 1\n")
        return 1
    if shutil.which("curl") is None:
        print("e2e: curl not found (make deps installs it)")
        print("e2e (%s): 0 passed, 1 failed" % args.bin)
        with open(counts_path, "w") as f:
            f.write("0 1\n")
        return 1

    if is_sanitized(os.path.join(bin_dir, "strait-dataplane")):
        harness.SLOW = 3.0
        os.environ.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=1:halt_on_error=1")
        os.environ.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
    harness.SESSION_DIR = tempfile.mkdtemp(prefix="strait-e2e-")

    loader = unittest.TestLoader()
    suite = loader.discover(HERE, pattern="test_*.py", top_level_dir=HERE)
    if args.k:
        keep = unittest.TestSuite()
        for t in _iter_tests(suite):
            if any(k in t.id() for k in args.k):
                keep.addTest(t)
        suite = keep

    print("e2e: binaries from %s%s, temp dir %s" % (
        bin_dir, " (sanitized: timeouts x%.0f)" % harness.SLOW if harness.SLOW > 1 else "",
        harness.SESSION_DIR))
    t0 = time.monotonic()
    result = Result(sys.stdout)
    suite.run(result)
    # Import errors of a test module show up as failed tests of unittest.loader; they are
    # counted by addError like any other error.
    if result.testsRun == 0:
        print("e2e: no tests found")
        result.failed += 1

    print("e2e: %.1fs" % (time.monotonic() - t0))
    if result.failed == 0 and not args.keep:
        shutil.rmtree(harness.SESSION_DIR, ignore_errors=True)
    else:
        print("e2e: process logs and manifests kept in %s" % harness.SESSION_DIR)
    print("e2e (%s): %d passed, %d failed" % (args.bin, result.passed, result.failed))
    with open(counts_path, "w") as f:
        f.write("%d %d\n" % (result.passed, result.failed))
    return 1 if result.failed else 0


if __name__ == "__main__":
    sys.exit(main())
