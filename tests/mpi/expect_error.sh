#!/bin/sh
# Runs an MPI command that must FAIL cleanly: a non-zero exit (not a hang: the
# CTest TIMEOUT catches that) and, in its output, every rank's error naming
# the failing rank. Usage: expect_error.sh NP FAILING_RANK mpirun args...
np=$1; bad=$2; shift 2
out=$("$@" 2>&1); rc=$?
printf '%s\n' "$out"
[ "$rc" -ne 0 ] || { echo "expect_error: exit status 0, expected non-zero"; exit 1; }
# The failing rank reports its own message, prefixed "rank BAD: ".
printf '%s\n' "$out" | grep -q "^rank $bad: xent::Error ([a-z_]*): rank $bad: " ||
  { echo "expect_error: rank $bad did not report its own error"; exit 1; }
# Every other rank raised an Error naming rank BAD.
r=0
while [ "$r" -lt "$np" ]; do
  if [ "$r" -ne "$bad" ]; then
    printf '%s\n' "$out" | grep -q "^rank $r: xent::Error .*rank $bad failed" ||
      { echo "expect_error: rank $r did not report rank $bad's failure"; exit 1; }
  fi
  r=$((r + 1))
done
echo "expect_error: all $np ranks stopped with an error naming rank $bad"
