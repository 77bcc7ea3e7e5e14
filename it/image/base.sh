#!/usr/bin/env bash
# Builds the Debian base that the image test (tests/image.rs) builds Dockerfile on, once: no image
# registry is reachable here, so `debian:bookworm-slim` is made locally with
# `debootstrap --variant=minbase bookworm` from the Debian mirror apt uses, and kept as a root
# file system tarball in ~/.cache/xipgate/image/ (outside the clone, like rnacos and
# kube-apiserver). The test imports it into its own buildah storage under that name.
# Needs root (debootstrap chroots) and Debian's debootstrap. A no-op when the tarball is there.
# `--check`: exit 0 if it is there, 1 if not, and print nothing (./dev asks this).
# `--path`: print where the tarball is (or would be) and nothing else (tests/image.rs asks this).
#
# ca-certificates and libssl3 are in it already (the runtime stage of Dockerfile installs them
# only when its base lacks them), so building the image needs no network.
set -euo pipefail
SUITE=bookworm
# Bump when what goes into the base changes: a new tarball is built beside the old one.
BASE_REVISION=1
INCLUDE=ca-certificates,libssl3
dir="${XIPGATE_CACHE:-$HOME/.cache/xipgate}/image"
out="$dir/debian-$SUITE-minbase-$BASE_REVISION.tar"
if [ "${1:-}" = --path ]; then
  echo "$out"
  exit 0
fi
if [ "${1:-}" = --check ]; then
  [ -f "$out" ]
  exit
fi
# One build at a time (./dev runs in several clones share the cache): a second waits for it.
mkdir -p "$dir"
exec 9>"$out.lock"
flock 9
if [ -f "$out" ]; then
  echo "it/image/base.sh: the $SUITE base is $out"
  exit 0
fi
debootstrap="$(command -v debootstrap || echo /usr/sbin/debootstrap)"
[ -x "$debootstrap" ] || { echo "it/image/base.sh: debootstrap is missing (Debian package debootstrap)" >&2; exit 1; }
((EUID == 0)) || { echo "it/image/base.sh: debootstrap needs root" >&2; exit 1; }

# The mirror apt uses for $SUITE: deb822 sources (URIs:/Suites:) or one-line sources.list.
mirror() {
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    awk -v suite="$SUITE" '
      /^[[:space:]]*$/ { if (uris != "" && ok) { print uris; exit } uris = ""; ok = 0; next }
      /^URIs:/ { uris = $2 }
      /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == suite) ok = 1 }
      END { if (uris != "" && ok) print uris }' "$f"
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    awk -v suite="$SUITE" '$1 == "deb" { u = 2; if ($2 ~ /^\[/) { while ($u !~ /\]$/) u++; u++ }
      if ($(u + 1) == suite) print $u }' "$f"
  done
}
url="$(mirror | head -n1)"
url="${url:-http://deb.debian.org/debian}"

work="$(mktemp -d "$dir/base.XXXXXX")"
trap 'rm -rf "$work"' EXIT
echo "it/image/base.sh: debootstrap --variant=minbase $SUITE from $url (a few minutes, once)"
"$debootstrap" --variant=minbase --include="$INCLUDE" "$SUITE" "$work/rootfs" "$url" >"$work/debootstrap.log" 2>&1 \
  || { tail -n 30 "$work/debootstrap.log" >&2; echo "it/image/base.sh: debootstrap failed" >&2; exit 1; }
# What an image does not carry: apt's downloads and lists, logs, the host's resolver.
rm -rf "$work/rootfs"/var/cache/apt/archives/*.deb "$work/rootfs"/var/cache/apt/*.bin \
  "$work/rootfs"/var/lib/apt/lists/* "$work/rootfs"/var/log/* "$work/rootfs"/tmp/*
: >"$work/rootfs/etc/resolv.conf"
tar -C "$work/rootfs" --numeric-owner -cf "$work/base.tar" .
mv "$work/base.tar" "$out"
echo "it/image/base.sh: the $SUITE base is $out ($(du -h "$out" | cut -f1))"
