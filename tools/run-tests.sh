#!/usr/bin/env bash
# `make test`: unit + end-to-end suites on the normal build, then the install checks (chart,
# manifests, CRDs, Dockerfile: tests/install/run.py, offline, once: they do not depend on the
# build's flags), then the unit + end-to-end suites built with ASan+UBSan, then a bounded
# libFuzzer run of the parsers (FUZZ_SECONDS per target, default 20; counts as one item).
# Prints per-suite lines and a closing "total: N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/.."
total_pass=0 total_fail=0 status=0
jobs=$(nproc 2>/dev/null || echo 2)

add_counts() { # $1 = counts file
  local p f
  if [ -f "$1" ]; then read -r p f < "$1"; else p=0 f=1; fi
  total_pass=$((total_pass + p)); total_fail=$((total_fail + f))
}

suite() { # $1 = build dir, $2.. = make vars
  local b=$1; shift
  rm -f "$b/unit.counts" "$b/e2e.counts"
  if ! make --no-print-directory -j"$jobs" "$@" BUILD="$b" all unit-bins; then
    echo "build failed for $b"; status=1; total_fail=$((total_fail + 1)); return
  fi
  make --no-print-directory "$@" BUILD="$b" unit-run || status=1
  add_counts "$b/unit.counts"
  python3 tests/e2e/run.py --bin "$b" || status=1
  add_counts "$b/e2e.counts"
}

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:halt_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
fuzz_step() { # one passed/failed item: every target clean over its corpus for FUZZ_SECONDS
  if make --no-print-directory fuzz FUZZ_SECONDS="${FUZZ_SECONDS:-20}"; then
    echo "fuzz: 1 passed, 0 failed"; total_pass=$((total_pass + 1))
  else
    echo "fuzz: 0 passed, 1 failed (inputs kept in build/fuzz/artifacts/)"; status=1
    total_fail=$((total_fail + 1))
  fi
}

install_checks() { # needs the plain binaries (their --help and shared libraries are checked)
  rm -f build/install.counts
  python3 tests/install/run.py --bin build || status=1
  add_counts build/install.counts
}

suite build
install_checks
suite build/asan SAN=1
fuzz_step
echo "total: $total_pass passed, $total_fail failed"
[ $total_fail -eq 0 ] || status=1
exit $status
