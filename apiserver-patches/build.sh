#!/usr/bin/env bash
# Build podkit's patched Kubernetes (and kwok and etcd for API-only clusters) from Go modules.
#
#   build.sh            build the binaries; the LAST stdout line is the bin directory
#   build.sh --prepare  only make the patched source tree; the last stdout line is the
#                       directory of the Go module that builds it (test.sh runs go test there)
#   build.sh --packages list the Go packages the patches touch (test.sh tests them)
#
# The module zip of k8s.io/kubernetes has no staging/ tree, so the tree cannot build as its
# own main module. We build it as a dependency instead: a generated module requires
# k8s.io/kubernetes (replaced by the patched copy) and pins every staging module
# k8s.io/<name> to its published v0.<minor>.<patch>, except a staging module a patch touches:
# its published module is copied to staging/src/k8s.io/<name> in the patched tree (where
# upstream keeps it, so the patch applies as written) and replaced by that copy.
#
# Cache: $PODKIT_CACHE (default ~/.cache/podkit)/k8s-<version>-<key>/{src,mod,bin}, where
# <key> hashes versions.env, this script and the patches. Every step writes into a temp
# dir and renames it into place at the end, so a failed run never touches a good entry.
# Progress goes to stderr; stdout carries only the final path.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=apiserver-patches/versions.env
source "$HERE/versions.env"
MODE=${1:-build}
[[ $MODE == build || $MODE == --prepare || $MODE == --packages ]] || { echo "usage: build.sh [--prepare|--packages]" >&2; exit 2; }

exec 3>&1 1>&2            # everything below prints to stderr; fd 3 is the real stdout
log() { echo "k8s-build: $*"; }
die() { echo "k8s-build: ERROR: $*"; exit 1; }
# die, keeping the tool's own output (the temp dir goes away) for whoever wants the details.
die_log() { cp "$1" "$CACHE/last-error.log" 2>/dev/null || true; die "$2 (details: $CACHE/last-error.log)"; }

# Binaries built from the patched tree (kwok comes from its own module, see build_bins).
CMDS=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl)

# --- Go toolchain -------------------------------------------------------------------------
GO=${GO:-$(command -v go || true)}
[[ -z $GO && -x /usr/local/go/bin/go ]] && GO=/usr/local/go/bin/go
[[ -n $GO ]] || die "Go toolchain not found: install Go >= 1.24 and put it on PATH (or set GO=/path/to/bin/go)"
GOVER=$("$GO" env GOVERSION 2>/dev/null) || die "'$GO' does not run: reinstall Go >= 1.24 or set GO=/path/to/bin/go"
minor=${GOVER#go1.}; minor=${minor%%.*}
[[ $minor =~ ^[0-9]+$ && $minor -ge 24 ]] || die "$GOVER is too old for Kubernetes $K8S_VERSION: install Go >= 1.24 (or set GO=/path/to/bin/go)"
command -v patch >/dev/null || die "'patch' not found: install it (Debian: apt-get install patch)"
# Never switch toolchains behind our back, ignore any go.work around us, and let go
# record the go.sum lines of the generated module as it resolves them.
export GOTOOLCHAIN=local GOWORK=off GOFLAGS="-mod=mod -buildvcs=false" CGO_ENABLED=0

# --- cache entry ----------------------------------------------------------------------------
shopt -s nullglob
PATCHES=("$HERE"/patches/[0-9]*.patch)      # applied in file-name order (0001-, 0002-, ...)
# Go packages with a changed or added file, from the patches' "+++ b/<dir>/<file>.go" lines
# (a staging path staging/src/k8s.io/<name>/... is the package k8s.io/<name>/...). test.sh
# runs the same list through `build.sh --packages`.
patched_packages() {
  sed -n -e 's#^+++ b/staging/src/\(.*\)/[^/]*\.go$#\1#p;t' -e 's#^+++ b/\(.*\)/[^/]*\.go$#k8s.io/kubernetes/\1#p' \
    "${PATCHES[@]}" /dev/null | sort -u
}
# Staging modules a patch touches (k8s.io/<name> from "+++ b/staging/src/k8s.io/<name>/").
mapfile -t STAGED < <(sed -n 's#^+++ b/staging/src/k8s\.io/\([a-z0-9-]*\)/.*#\1#p' "${PATCHES[@]}" /dev/null | sort -u)
if [[ $MODE == --packages ]]; then patched_packages >&3; exit 0; fi
KEY=$(cd "$HERE" && sha256sum versions.env build.sh "${PATCHES[@]#"$HERE"/}" | sha256sum | cut -c1-12)
CACHE=${PODKIT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/podkit}
ENTRY=$CACHE/k8s-$K8S_VERSION-$KEY
mkdir -p "$CACHE"
exec 9>"$CACHE/.k8s-build.lock"           # one builder at a time (make k8s vs make test-go)
flock 9

if [[ $MODE == build && -d $ENTRY/bin ]]; then
  log "cached: $ENTRY/bin"; echo "$ENTRY/bin" >&3; exit 0
fi
if [[ $MODE == --prepare && -d $ENTRY/mod ]]; then
  echo "$ENTRY/mod" >&3; exit 0
fi

TMP=""
trap '[[ -n $TMP ]] && rm -rf "$TMP"' EXIT

prepare() {
  TMP=$(mktemp -d "$CACHE/.tmp-k8s-XXXXXX")
  log "downloading k8s.io/kubernetes@$K8S_VERSION"
  # go mod download -json reports a failure inside its JSON on stdout, so keep both streams.
  local dir
  (cd "$TMP" && GOFLAGS="" "$GO" mod download -json "k8s.io/kubernetes@$K8S_VERSION" >"$TMP/download.log" 2>&1) || true
  dir=$(sed -n 's/^\t"Dir": "\(.*\)",$/\1/p' "$TMP/download.log")
  [[ -n $dir && -f $dir/go.mod ]] || die_log "$TMP/download.log" "cannot download k8s.io/kubernetes@$K8S_VERSION from the module proxy (GOPROXY=$("$GO" env GOPROXY)): check the network or GOPROXY, then rerun"

  log "copying the source and applying ${#PATCHES[@]} patch(es)"
  cp -r "$dir" "$TMP/src"
  chmod -R u+w "$TMP/src"                 # the module cache is read-only
  rm -f "$TMP/src/go.work" "$TMP/src/go.work.sum"
  local staging_version=v0.${K8S_VERSION#v1.} name sdir m
  for name in "${STAGED[@]}"; do
    (cd "$TMP" && GOFLAGS="" "$GO" mod download -json "k8s.io/$name@$staging_version" >"$TMP/download.log" 2>&1) || true
    sdir=$(sed -n 's/^\t"Dir": "\(.*\)",$/\1/p' "$TMP/download.log")
    [[ -n $sdir && -f $sdir/go.mod ]] || die_log "$TMP/download.log" "cannot download k8s.io/$name@$staging_version from the module proxy (GOPROXY=$("$GO" env GOPROXY)): check the network or GOPROXY, then rerun"
    mkdir -p "$TMP/src/staging/src/k8s.io"
    cp -r "$sdir" "$TMP/src/staging/src/k8s.io/$name"
    chmod -R u+w "$TMP/src/staging/src/k8s.io/$name"
  done
  local p
  for p in "${PATCHES[@]}"; do
    patch -p1 -d "$TMP/src" --batch --forward --fuzz=0 --no-backup-if-mismatch --quiet <"$p" >"$TMP/patch.log" 2>&1 \
      || die_log "$TMP/patch.log" "patch $(basename "$p") does not apply to k8s.io/kubernetes $K8S_VERSION: refresh it against that version (see apiserver-patches/README.md)"
  done

  # The generated module. The staging list comes from the downloaded go.mod's
  # "k8s.io/<name> => ./staging/src/k8s.io/<name>" lines, so a new release needs no edit here.
  mkdir "$TMP/mod"
  {
    echo "// Generated by apiserver-patches/build.sh: builds the patched k8s.io/kubernetes $K8S_VERSION."
    echo "module podkit.local/k8s-build"
    grep -E '^(go|godebug) ' "$dir/go.mod"      # same language version and GODEBUG defaults
    echo "require k8s.io/kubernetes $K8S_VERSION"
    echo "replace k8s.io/kubernetes => ../src"
    for m in $(sed -n 's#^\s*\(k8s\.io/[a-z0-9-]*\) => \./staging/src/.*#\1#p' "$dir/go.mod"); do
      if [[ " ${STAGED[*]} " == *" ${m#k8s.io/} "* ]]; then echo "replace $m => ../src/staging/src/$m"
      else echo "replace $m => $m $staging_version"; fi
    done
  } >"$TMP/mod/go.mod"
  grep -q '=> k8s.io/api ' "$TMP/mod/go.mod" || die "no staging modules found in k8s.io/kubernetes@$K8S_VERSION go.mod: the build needs updating for this release"

  # Resolve (download, and record in go.sum) what the binaries and the tests of the patched
  # packages need, so later builds and test.sh find every module in place.
  log "resolving dependencies"
  local pkgs=() c
  for c in "${CMDS[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$c"); done
  mapfile -t -O ${#pkgs[@]} pkgs < <(patched_packages)
  (cd "$TMP/mod" && "$GO" list -deps -test "${pkgs[@]}" >/dev/null 2>"$TMP/resolve.log") \
    || die_log "$TMP/resolve.log" "cannot resolve the packages to build from the module proxy (GOPROXY=$("$GO" env GOPROXY)): check the network or GOPROXY and rerun (or a patch imports an unknown package)"
  mv "$TMP" "$ENTRY"; TMP=""
}

build_bins() {
  TMP=$(mktemp -d "$ENTRY/.bin-XXXXXX")
  local build_date pkgs=() c ld=() v
  # buildDate: the release's publication time from the proxy, so rebuilds are reproducible.
  build_date=$(sed -n 's/.*"Time":"\([^"]*\)".*/\1/p' "$("$GO" env GOMODCACHE)/cache/download/k8s.io/kubernetes/@v/$K8S_VERSION.info" 2>/dev/null || true)
  for c in "${CMDS[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$c"); done
  # The same variables upstream's hack/lib/version.sh sets; without them --version says v0.0.0.
  local minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
  for v in "gitVersion=$K8S_VERSION$VERSION_SUFFIX" gitMajor=1 "gitMinor=$minor" gitTreeState=dirty \
           "buildDate=${build_date:-1970-01-01T00:00:00Z}"; do
    ld+=("-X k8s.io/component-base/version.$v" "-X k8s.io/client-go/pkg/version.$v")
  done
  log "building ${CMDS[*]} (from scratch: ~10 min on 2 cores)"
  # Upstream's release flags: static, stripped, trimmed paths, and its default build tags.
  (cd "$ENTRY/mod" && "$GO" build -trimpath -tags selinux,notest,grpcnotrace \
      -ldflags "-s -w ${ld[*]}" -o "$TMP/" "${pkgs[@]}") \
    || die "go build of Kubernetes $K8S_VERSION failed (see the compiler output above): fix the patch that broke it"

  log "building kwok $KWOK_VERSION"
  # kwok is its own module with no replace directives, so `go install pkg@version` builds it
  # exactly as released. KubeVersion is the default kwokctl uses for its clusters.
  (cd "$TMP" && GOFLAGS="" GOBIN="$TMP" "$GO" install -trimpath \
      -ldflags "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=${KWOK_VERSION#v} -X sigs.k8s.io/kwok/pkg/consts.KubeVersion=${K8S_VERSION#v}" \
      "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION" "sigs.k8s.io/kwok/cmd/kwokctl@$KWOK_VERSION") \
    || die "cannot build sigs.k8s.io/kwok@$KWOK_VERSION (module proxy unreachable? check the network or GOPROXY)"

  log "building etcd $ETCD_VERSION"
  # etcd's server module has replace directives, so `go install pkg@version` refuses it; a
  # throwaway module that requires it builds its main package as released.
  mkdir "$TMP/etcd-mod"
  printf 'module podkit.local/etcd\n\ngo 1.23\n\nrequire go.etcd.io/etcd/server/v3 %s\n' \
    "$ETCD_VERSION" > "$TMP/etcd-mod/go.mod"
  (cd "$TMP/etcd-mod" && GOFLAGS=-mod=mod "$GO" build -trimpath -ldflags "-s -w" \
      -o "$TMP/etcd" go.etcd.io/etcd/server/v3) \
    || die "cannot build go.etcd.io/etcd/server/v3@$ETCD_VERSION (module proxy unreachable? check the network or GOPROXY)"
  rm -rf "$TMP/etcd-mod"
  mv "$TMP" "$ENTRY/bin"; TMP=""
}

[[ -d $ENTRY/mod ]] || prepare
if [[ $MODE == --prepare ]]; then echo "$ENTRY/mod" >&3; exit 0; fi
build_bins
# Keep the three newest entries; older ones only cost disk (names are ours: ls is safe).
# shellcheck disable=SC2012
ls -dt "$CACHE"/k8s-v*-*/ | tail -n +4 | xargs -r rm -rf
log "done: $ENTRY/bin"
echo "$ENTRY/bin" >&3
