#!/usr/bin/env bash
# Build OpenKruise's kruise-manager (the main package at the root of
# github.com/openkruise/kruise) from the Go module proxy, for the scale benchmark's peer
# (tools/scale_bench/peer_kruise.py).
#
#   build.sh     build; the LAST stdout line is the bin directory (a no-op when cached)
#
# How and where it builds: tools/testbed/gomodule.sh. Beside the binary go what an install
# applies before the manager starts, as in the module: the CRDs (config/crd/bases -> crd/), the
# CRD patches that turn on conversion webhooks (config/crd/patches/webhook_in_*.yaml and
# config/crd/kustomization.yaml, which lists the ones in use -> crd-patches/) and the webhook
# configurations (config/webhook/*.yaml -> webhook/).
set -euo pipefail

NAME=kruise-manager
MODULE=github.com/openkruise/kruise
VERSION=v1.9.0
MIN_GO_MINOR=23           # kruise v1.9.0's go.mod says `go 1.23.0`

extras() {
  local src=$1 entry=$2
  mkdir -p "$entry/crd" "$entry/crd-patches" "$entry/webhook"
  cp "$src"/config/crd/bases/*.yaml "$entry/crd/"
  cp "$src"/config/crd/patches/webhook_in_*.yaml "$src/config/crd/kustomization.yaml" "$entry/crd-patches/"
  cp "$src"/config/webhook/*.yaml "$entry/webhook/"
}

check() {
  [[ -f $2/crd/apps.kruise.io_clonesets.yaml ]] || die "the module has no CloneSet CRD"
}

# shellcheck source=tools/testbed/gomodule.sh
source "$(dirname "${BASH_SOURCE[0]}")/../gomodule.sh"
build_module "$MODULE"
