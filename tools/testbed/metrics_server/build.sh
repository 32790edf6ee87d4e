#!/usr/bin/env bash
# Build metrics-server (sigs.k8s.io/metrics-server/cmd/metrics-server) from the Go module proxy,
# for the full testbed's resource-metrics API (tools/testbed/metrics_server.py).
#
#   build.sh     build; the LAST stdout line is the bin directory (a no-op when cached)
#
# How and where it builds: tools/testbed/gomodule.sh. Beside the binary goes what the module's
# install applies with it (manifests/base/rbac.yaml and apiservice.yaml -> manifests/), so the
# testbed's RBAC and APIService are upstream's, adapted to a host process.
set -euo pipefail

NAME=metrics-server
MODULE=sigs.k8s.io/metrics-server
VERSION=v0.8.0
MIN_GO_MINOR=24           # metrics-server v0.8.0's go.mod says `go 1.24.4`

extras() {
  mkdir -p "$2/manifests"
  cp "$1/manifests/base/rbac.yaml" "$1/manifests/base/apiservice.yaml" "$2/manifests/"
}

# shellcheck source=tools/testbed/gomodule.sh
source "$(dirname "${BASH_SOURCE[0]}")/../gomodule.sh"
# The version the binary reports, as upstream's Makefile stamps it (client-go's version package).
build_module "$MODULE/cmd/metrics-server" "-X k8s.io/client-go/pkg/version.gitVersion=$VERSION"
