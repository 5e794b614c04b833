#!/usr/bin/env bash
# Runs the row-math test binaries of a build directory and merges their
# "[accuracy]" lines (printed by tests/test_util.h) into one Markdown table:
# per function and type, the number of values compared with the long-double
# reference, the worst relative error (where the relative bar applies), the
# worst absolute error (where the absolute bar applies), and the worst error
# as a fraction of the bar (≤ 1 passes).
#   usage: tests/accuracy_table.sh [build-dir]   (default: build)
set -euo pipefail
build=${1:-build}
bins=(core_test properties_test extremes_test gaussian_test gradcheck_test)
for b in "${bins[@]}"; do
  "$build/tests/$b" --gtest_brief=1 | grep '^\[accuracy\]' | grep -v ' function ' || true
done | awk '
  { n = NF; key = $2; for (i = 3; i <= n - 5; ++i) key = key " " $i
    k = key "|" $(n - 4)
    count[k] += $(n - 3)
    if ($(n - 2) > rel[k]) rel[k] = $(n - 2)
    if ($(n - 1) > abs[k]) abs[k] = $(n - 1)
    if ($n > ratio[k]) ratio[k] = $n }
  END {
    print "| function | type | values | max rel err | max abs err | worst err / bar |"
    print "|---|---|---:|---:|---:|---:|"
    for (k in count) {
      split(k, a, "|")
      printf "| %s | %s | %d | %.3g | %.3g | %.3g |\n", a[1], a[2], count[k], rel[k], abs[k], ratio[k] | "sort"
    }
  }'
