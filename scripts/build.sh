#!/usr/bin/env bash
# Configures and builds one build type into build/ (Release) or build-<type>/.
# usage: scripts/build.sh [Release|Sanitize|Debug]
set -euo pipefail
cd "$(dirname "$0")/.."
type=${1:-Release}
dir=build
[ "$type" = Release ] || dir="build-$(echo "$type" | tr 'A-Z' 'a-z')"
cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE="$type" -DDM_WERROR=ON >/dev/null
cmake --build "$dir" -j"$(nproc)"
