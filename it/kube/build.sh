#!/usr/bin/env bash
# Builds the real kube-apiserver the Kubernetes tests run against, once: from the Go module
# k8s.io/kubernetes at $KUBE_VERSION, into ~/.cache/xipgate/kube/<version>/ (outside the clone,
# like rnacos). About 15 minutes cold on 2 cores; a no-op when the binary is there.
# `--check`: exit 0 if it is there, 1 if not, and print nothing (./dev asks this).
#
# k8s.io/kubernetes is not meant to be required as a module: its go.mod replaces every staging
# module (k8s.io/api, client-go, ...) with ./staging/src/..., and requires them at v0.0.0, which
# the module proxy refuses. A module of our own that pins each of them to the matching v0.x
# release with a `replace` makes it build, which is what this script writes.
set -euo pipefail
KUBE_VERSION="${KUBE_VERSION:-v1.37.2}"
STAGING_VERSION="v0.${KUBE_VERSION#v1.}"
out="${XIPGATE_CACHE:-$HOME/.cache/xipgate}/kube/$KUBE_VERSION"
if [ "${1:-}" = --check ]; then
  [ -x "$out/kube-apiserver" ]
  exit
fi
# One build at a time (./dev runs in several clones share the cache): a second waits for it.
mkdir -p "$(dirname "$out")"
exec 9>"$out.lock"
flock 9
if [ -x "$out/kube-apiserver" ]; then
  echo "it/kube/build.sh: kube-apiserver $KUBE_VERSION is in $out"
  exit 0
fi
# Go from go.dev/dl lives in /usr/local/go, not always on PATH (Debian's golang is too old).
command -v go >/dev/null 2>&1 || PATH="$PATH:/usr/local/go/bin"
command -v go >/dev/null 2>&1 || { echo "it/kube/build.sh: 'go' is missing (Go 1.26 or newer: https://go.dev/dl)" >&2; exit 1; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$work"
echo "it/kube/build.sh: building kube-apiserver $KUBE_VERSION into $out (about 15 minutes, once)"
gomod="$(go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')"
{
  echo "module xipgate.test/kube"
  echo
  grep -m1 '^go ' "$gomod"
  echo
  echo "require k8s.io/kubernetes $KUBE_VERSION"
  echo
  grep -E '=> \./staging/' "$gomod" | awk -v v="$STAGING_VERSION" '{ print "replace " $1 " => " $1 " " v }'
} >go.mod
cat >tools.go <<'GO'
//go:build tools

package tools

import _ "k8s.io/kubernetes/cmd/kube-apiserver"
GO
go mod tidy >/dev/null 2>&1 || go mod tidy
mkdir -p "$out.tmp"
CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "$out.tmp/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver
rm -rf "$out" && mv "$out.tmp" "$out"
echo "it/kube/build.sh: kube-apiserver $KUBE_VERSION is in $out"
