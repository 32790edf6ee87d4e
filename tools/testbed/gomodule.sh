# Sourced by the build scripts of the programs the testbed runs from their Go modules
# (kruise/build.sh, metrics_server/build.sh); not run by itself.
#
# A program builds as a dependency of a generated module whose go.mod is the program's own
# (every require and replace line, so the versions are exactly the ones it pins) under another
# module path, plus a require of the program's module; go.sum is the program's. CGO off,
# GOTOOLCHAIN=local (never fetches a toolchain).
#
# Cache: $PODKIT_CACHE (default ~/.cache/podkit)/<name>-<version>-<key>/{bin,...}, where <key>
# hashes the calling script and this file. The entry is built in a temp dir and renamed into
# place at the end, so a failed run never leaves a half entry. Progress goes to stderr; the
# LAST stdout line is the bin directory (a no-op when cached).
#
# The caller sets NAME (the binary, the cache entry's and the log's prefix), MODULE, VERSION,
# MIN_GO_MINOR (its go.mod's Go minor version), defines `extras SRC ENTRY` (what goes beside
# the binary, from the module's source; `check SRC ENTRY` may refuse a result), then calls
# `build_module PACKAGE [LDFLAGS]`.

build_module() {
  local package=$1 ldflags=${2:-}
  local script=${BASH_SOURCE[1]} lib=${BASH_SOURCE[0]}
  exec 3>&1 1>&2            # everything below prints to stderr; fd 3 is the real stdout
  log() { echo "$NAME-build: $*"; }
  die() { echo "$NAME-build: ERROR: $*"; exit 1; }

  GO=${GO:-$(command -v go || true)}
  [[ -z $GO && -x /usr/local/go/bin/go ]] && GO=/usr/local/go/bin/go
  [[ -n $GO ]] || die "Go toolchain not found: install Go >= 1.$MIN_GO_MINOR and put it on PATH (or set GO=)"
  local gover minor
  gover=$("$GO" env GOVERSION 2>/dev/null) || die "'$GO' does not run (set GO=/path/to/bin/go)"
  minor=${gover#go1.}; minor=${minor%%.*}
  [[ $minor =~ ^[0-9]+$ && $minor -ge $MIN_GO_MINOR ]] \
    || die "$gover is too old for $NAME $VERSION (its go.mod needs Go 1.$MIN_GO_MINOR)"
  export GOTOOLCHAIN=local GOWORK=off GOFLAGS="-mod=mod -buildvcs=false" CGO_ENABLED=0

  local key cache entry
  key=$(cat "$script" "$lib" | sha256sum | cut -c1-12)
  cache=${PODKIT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/podkit}
  entry=$cache/$NAME-$VERSION-$key
  mkdir -p "$cache"
  exec 9>"$cache/.$NAME-build.lock"        # one builder at a time
  flock 9
  if [[ -x $entry/bin/$NAME ]]; then
    log "cached: $entry/bin"; echo "$entry/bin" >&3; exit 0
  fi

  TMP=$(mktemp -d "$cache/.tmp-$NAME-XXXXXX")
  trap 'rm -rf "$TMP"' EXIT
  local started src
  started=$(date +%s)

  log "downloading $MODULE@$VERSION"
  mkdir -p "$TMP/mod"
  (cd "$TMP/mod" && GOFLAGS="" "$GO" mod download -json "$MODULE@$VERSION" \
    >"$TMP/download.json" 2>&1) || true
  src=$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p' "$TMP/download.json")
  [[ -n $src && -f $src/go.mod ]] || { cat "$TMP/download.json"; die "cannot download $MODULE@$VERSION from the module proxy (GOPROXY=$("$GO" env GOPROXY))"; }

  sed "s#^module .*#module podkit.local/$NAME-build#" "$src/go.mod" >"$TMP/mod/go.mod"
  printf '\nrequire %s %s\n' "$MODULE" "$VERSION" >>"$TMP/mod/go.mod"
  cp "$src/go.sum" "$TMP/mod/go.sum"
  chmod u+w "$TMP/mod/go.mod" "$TMP/mod/go.sum"

  log "building $NAME with $gover (a cold build takes minutes)"
  mkdir -p "$TMP/entry/bin"
  (cd "$TMP/mod" && "$GO" build -trimpath -ldflags "-s -w $ldflags" \
    -o "$TMP/entry/bin/$NAME" "$package") || die "go build of $package@$VERSION failed (see above)"
  extras "$src" "$TMP/entry"
  chmod -R u+w "$TMP/entry"
  if declare -F check >/dev/null; then check "$src" "$TMP/entry"; fi
  echo "$VERSION $gover built in $(( $(date +%s) - started ))s" >"$TMP/entry/BUILD"

  rm -rf "$entry"
  mv "$TMP/entry" "$entry"
  log "built in $(( $(date +%s) - started ))s: $entry/bin"
  echo "$entry/bin" >&3
}
