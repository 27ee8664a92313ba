#!/usr/bin/env bash
# Bounded libFuzzer run, for `make fuzz` and `make test`: each target in $1 (build/fuzz) runs
# $2 seconds over its checked-in corpus, both at once. New inputs go to a temporary folder
# (the checked-in corpus is read only here; grow it with -merge=1, see docs/fuzzing.md).
# Any crash, leak, timeout or out-of-memory fails the run; the offending input is kept in
# $1/artifacts/ and the log tail printed. Exit 0 only if every target ran clean.
set -uo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build/fuzz} secs=${2:-20}
targets=(http1 snapwire)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/strait-fuzz.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$build/artifacts"
export ASAN_OPTIONS=detect_leaks=1:halt_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

pids=()
for t in "${targets[@]}"; do
  mkdir -p "$tmp/$t.new"
  dict=()
  [ -f "tests/fuzz/$t.dict" ] && dict=(-dict="tests/fuzz/$t.dict")
  "$build/fuzz_$t" "$tmp/$t.new" "tests/fuzz/corpus/$t" "${dict[@]}" \
    -max_total_time="$secs" -rss_limit_mb=1024 -timeout=5 \
    -print_final_stats=1 -artifact_prefix="$build/artifacts/$t-" >"$tmp/$t.log" 2>&1 &
  pids+=($!)
done

status=0
for i in "${!targets[@]}"; do
  t=${targets[$i]}
  if wait "${pids[$i]}"; then
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$tmp/$t.log")
    cov=$(grep -Eo 'cov: [0-9]+' "$tmp/$t.log" | tail -1)
    echo "fuzz $t: ok, ${execs:-?} execs in ${secs}s, $cov, $(ls "$tmp/$t.new" | wc -l) new inputs (discarded)"
  else
    status=1
    echo "fuzz $t: FAILED"
    grep -E 'ERROR|WARNING|SUMMARY|invariant|runtime error|^ +#[0-9]' "$tmp/$t.log" | head -40
    art=$(sed -n 's/.*Test unit written to //p' "$tmp/$t.log" | tail -1)
    echo "  reproduce: $build/fuzz_$t ${art:-<no input saved; see the log>}"
  fi
done
exit $status
