#!/usr/bin/env bash
# The test command (README.md; .ci/run calls it): installs dependencies,
# builds Release and runs every test, then builds with AddressSanitizer +
# UndefinedBehaviorSanitizer and runs every test again.
# DM_SKIP_SANITIZE=1 skips the sanitizer pass.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh Release
ctest --test-dir build --output-on-failure -j2
if [ "${DM_SKIP_SANITIZE:-0}" != 1 ]; then
  bash scripts/build.sh Sanitize
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir build-sanitize --output-on-failure -j2
fi
echo "all tests passed"
