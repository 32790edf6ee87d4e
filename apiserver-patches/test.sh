#!/usr/bin/env bash
# `make test-go`: run the Go unit tests of the podkit patches inside the patched Kubernetes
# tree. Only the packages the patches touch are tested (the list is read from the patches),
# not all of Kubernetes. Output is go test's own; the exit code is non-zero on any failure.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# The patched tree and its build module, from build.sh's cache (made on first use; a
# missing toolchain, an unreachable proxy or a stale patch stop it with one line).
MOD=$(bash "$HERE/build.sh" --prepare | tail -n 1)

GO=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
export GOTOOLCHAIN=local GOWORK=off GOFLAGS="-mod=mod -buildvcs=false"

# Packages with a changed or added Go file (staging ones included), as build.sh reads them.
mapfile -t PKGS < <(bash "$HERE/build.sh" --packages)
[[ ${#PKGS[@]} -gt 0 ]] || { echo "test.sh: no Go files in apiserver-patches/patches/*.patch" >&2; exit 1; }

cd "$MOD"
# Whole packages, not only the podkit tests: their upstream tests (a few seconds in all,
# once compiled) prove the patches broke nothing around the code they change.
exec "$GO" test -count=1 "${PKGS[@]}"
