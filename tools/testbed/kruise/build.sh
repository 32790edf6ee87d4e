#!/usr/bin/env bash
# Build OpenKruise's kruise-manager (the main package at the root of
# github.com/openkruise/kruise) from the Go module proxy, for the scale benchmark's peer
# (tools/scale_bench/peer_kruise.py).
#
#   build.sh     build; the LAST stdout line is the bin directory (a no-op when cached)
#
# kruise's module builds as a dependency of a generated module whose go.mod is kruise's own
# (every require and replace line, so the versions are exactly the ones kruise pins) under
# another module path, plus a require of kruise itself; go.sum is kruise's. Beside the binary
# go what an install applies before the manager starts, as in the module: the CRDs
# (config/crd/bases -> crd/), the CRD patches that turn on conversion webhooks
# (config/crd/patches/webhook_in_*.yaml and config/crd/kustomization.yaml, which lists the ones
# in use -> crd-patches/) and the webhook configurations (config/webhook/*.yaml -> webhook/).
#
# Cache: $PODKIT_CACHE (default ~/.cache/podkit)/kruise-<version>-<key>/{bin,crd,...}, where <key>
# hashes this script. The entry is built in a temp dir and renamed into place at the end, so a
# failed run never leaves a half entry. Progress goes to stderr; stdout carries only the path.
set -euo pipefail

KRUISE_VERSION=v1.9.0
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
exec 3>&1 1>&2            # everything below prints to stderr; fd 3 is the real stdout
log() { echo "kruise-build: $*"; }
die() { echo "kruise-build: ERROR: $*"; exit 1; }

GO=${GO:-$(command -v go || true)}
[[ -z $GO && -x /usr/local/go/bin/go ]] && GO=/usr/local/go/bin/go
[[ -n $GO ]] || die "Go toolchain not found: install Go >= 1.23 and put it on PATH (or set GO=)"
GOVER=$("$GO" env GOVERSION 2>/dev/null) || die "'$GO' does not run (set GO=/path/to/bin/go)"
minor=${GOVER#go1.}; minor=${minor%%.*}
# kruise v1.9.0's go.mod says `go 1.23.0`; GOTOOLCHAIN=local never fetches a newer one.
[[ $minor =~ ^[0-9]+$ && $minor -ge 23 ]] || die "$GOVER is too old for kruise $KRUISE_VERSION (go.mod: go 1.23.0)"
export GOTOOLCHAIN=local GOWORK=off GOFLAGS="-mod=mod -buildvcs=false" CGO_ENABLED=0

KEY=$(sha256sum "$HERE/build.sh" | cut -c1-12)
CACHE=${PODKIT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/podkit}
ENTRY=$CACHE/kruise-$KRUISE_VERSION-$KEY
mkdir -p "$CACHE"
exec 9>"$CACHE/.kruise-build.lock"        # one builder at a time
flock 9
if [[ -x $ENTRY/bin/kruise-manager ]]; then
  log "cached: $ENTRY/bin"; echo "$ENTRY/bin" >&3; exit 0
fi

TMP=$(mktemp -d "$CACHE/.tmp-kruise-XXXXXX")
trap 'rm -rf "$TMP"' EXIT
started=$(date +%s)

log "downloading github.com/openkruise/kruise@$KRUISE_VERSION"
mkdir -p "$TMP/mod"
(cd "$TMP/mod" && GOFLAGS="" "$GO" mod download -json "github.com/openkruise/kruise@$KRUISE_VERSION" \
  >"$TMP/download.json" 2>&1) || true
SRC=$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p' "$TMP/download.json")
[[ -n $SRC && -f $SRC/go.mod ]] || { cat "$TMP/download.json"; die "cannot download github.com/openkruise/kruise@$KRUISE_VERSION from the module proxy (GOPROXY=$("$GO" env GOPROXY))"; }

# The generated module: kruise's go.mod under another path, requiring kruise itself.
sed 's#^module .*#module podkit.local/kruise-build#' "$SRC/go.mod" >"$TMP/mod/go.mod"
printf '\nrequire github.com/openkruise/kruise %s\n' "$KRUISE_VERSION" >>"$TMP/mod/go.mod"
cp "$SRC/go.sum" "$TMP/mod/go.sum"
chmod u+w "$TMP/mod/go.mod" "$TMP/mod/go.sum"

log "building kruise-manager with $GOVER (a cold build takes minutes)"
mkdir -p "$TMP/entry/bin" "$TMP/entry/crd" "$TMP/entry/crd-patches" "$TMP/entry/webhook"
(cd "$TMP/mod" && "$GO" build -trimpath -ldflags "-s -w" -o "$TMP/entry/bin/kruise-manager" \
  github.com/openkruise/kruise) || die "go build of github.com/openkruise/kruise@$KRUISE_VERSION failed (see above)"
cp "$SRC"/config/crd/bases/*.yaml "$TMP/entry/crd/"
cp "$SRC"/config/crd/patches/webhook_in_*.yaml "$SRC/config/crd/kustomization.yaml" "$TMP/entry/crd-patches/"
cp "$SRC"/config/webhook/*.yaml "$TMP/entry/webhook/"
chmod -R u+w "$TMP/entry"
[[ -f $TMP/entry/crd/apps.kruise.io_clonesets.yaml ]] || die "the module has no CloneSet CRD"
echo "$KRUISE_VERSION $GOVER built in $(( $(date +%s) - started ))s" >"$TMP/entry/BUILD"

rm -rf "$ENTRY"
mv "$TMP/entry" "$ENTRY"
log "built in $(( $(date +%s) - started ))s: $ENTRY/bin"
echo "$ENTRY/bin" >&3
