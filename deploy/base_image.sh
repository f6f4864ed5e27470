#!/usr/bin/env bash
# A local stand-in for docker.io/library/python:3.11-slim, for machines that reach Debian's apt
# mirror but no container registry:
#
#     sudo deploy/base_image.sh [podman|docker]      # what `make container` runs when it must
#
# Debian bookworm (whose python3 is 3.11, as in python:3.11-slim) is debootstrapped from the
# Debian mirror this host's apt already uses (read from its apt sources now, never stored), with:
#   - the host's CA certificates, because TLS to package indexes may go through a proxy whose CA
#     only the host trusts (the image then trusts what the host trusts: ship images built where
#     that is what you want, or pull the real base image);
#   - the host's Debian apt sources, so apt inside works as it does on the host;
#   - pip allowed to install into the system Python (the generated Dockerfile pip-installs uv as
#     root): EXTERNALLY-MANAGED removed and PIP_BREAK_SYSTEM_PACKAGES=1.
# The result is imported and tagged docker.io/library/python:3.11-slim, so a build uses it without
# pulling. Idempotent: an image already there is reused, unless it is a stand-in made with other
# CA certificates than the host's now (then it is rebuilt). A real pulled image is never replaced.
# Making it needs root, debootstrap and podman (or docker): one to three and a half minutes, 183 MB.
# MIRROR=<url> names another Debian mirror.
set -euo pipefail

BACKEND=${1:-podman}
IMAGE=docker.io/library/python:3.11-slim
SUITE=bookworm
CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt
LABEL=org.fashion-zoo.stand-in-ca-sha256

die() { echo "deploy/base_image.sh: $*" >&2; exit 2; }
# runc and explicit ulimits (see containers.conf), unless the caller chose its own settings.
[ "$BACKEND" != podman ] || export CONTAINERS_CONF=${CONTAINERS_CONF:-$(dirname "$(readlink -f "$0")")/containers.conf}

command -v "$BACKEND" >/dev/null || die "$BACKEND not found: apt-get install podman (or use docker)"
[ -r "$CA_BUNDLE" ] || die "$CA_BUNDLE not found: apt-get install ca-certificates"

ca_sha=$(sha256sum "$CA_BUNDLE" | cut -d' ' -f1)
if "$BACKEND" image inspect "$IMAGE" >/dev/null 2>&1; then
  have=$("$BACKEND" image inspect --format "{{ index .Config.Labels \"$LABEL\" }}" "$IMAGE" 2>/dev/null || true)
  if [ -z "$have" ] || [ "$have" = "<no value>" ]; then
    echo "$IMAGE: present (not a stand-in), used as it is"; exit 0
  elif [ "$have" = "$ca_sha" ]; then
    echo "$IMAGE: the local stand-in is up to date, reused"; exit 0
  fi
  echo "$IMAGE: the host's CA certificates changed since the stand-in was made; rebuilding it"
fi
[ "$(id -u)" = 0 ] || die "making $IMAGE needs root (debootstrap); run this script as root"
command -v debootstrap >/dev/null || die "debootstrap not found: apt-get install debootstrap"

# The host's Debian mirror: the first URI of an enabled apt source for a Debian release suite
# (deb822 *.sources and one-line *.list files; -security, -updates and -backports are skipped).
MIRROR=${MIRROR:-$(python3 - <<'PY'
import glob, re
releases = {"bookworm", "trixie", "bullseye", "stable", "testing", "unstable", "sid"}
for path in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
    for stanza in re.split(r"\n\s*\n", open(path).read()):
        f = {k.strip().lower(): v.strip() for k, _, v in
             (l.partition(":") for l in stanza.splitlines() if ":" in l and not l.startswith("#"))}
        if ("deb" in f.get("types", "").split() and f.get("enabled", "yes").lower() != "no"
                and releases & set(f.get("suites", "").split()) and f.get("uris")):
            print(f["uris"].split()[0]); raise SystemExit
for path in ["/etc/apt/sources.list", *sorted(glob.glob("/etc/apt/sources.list.d/*.list"))]:
    try:
        lines = open(path).read().splitlines()
    except OSError:
        continue
    for line in lines:
        words = re.sub(r"\[[^]]*\]", "", line.split("#")[0]).split()
        if len(words) >= 3 and words[0] == "deb" and words[2] in releases:
            print(words[1]); raise SystemExit
PY
)}
[ -n "$MIRROR" ] || die "no Debian mirror in this host's apt sources (/etc/apt/sources.list*); name one: MIRROR=<url> $0"

work=$(mktemp -d /var/tmp/fashion-zoo-base.XXXXXX)
trap 'rm -rf "$work"' EXIT
rootfs=$work/rootfs

echo "$IMAGE: debootstrap $SUITE (minbase + python3) from the host's Debian mirror"
debootstrap --variant=minbase \
  --include=python3,python3-pip,python3-venv,ca-certificates,python-is-python3 \
  "$SUITE" "$rootfs" "$MIRROR" >"$work/debootstrap.log" 2>&1 \
  || { tail -n 30 "$work/debootstrap.log" >&2; die "debootstrap failed (log above)"; }

# The host's trust store and Debian apt sources (see the header for why).
cp "$CA_BUNDLE" "$rootfs$CA_BUNDLE"
if [ -d /usr/local/share/ca-certificates ]; then
  cp -r /usr/local/share/ca-certificates/. "$rootfs/usr/local/share/ca-certificates/"
fi
for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list; do
  [ -r "$f" ] && grep -q -- "$MIRROR" "$f" || continue
  mkdir -p "$rootfs$(dirname "$f")" && cp "$f" "$rootfs$f"
  [ "$f" = /etc/apt/sources.list ] || rm -f "$rootfs/etc/apt/sources.list"
done
rm -f "$rootfs"/usr/lib/python3*/EXTERNALLY-MANAGED
# What a slim image leaves out: package lists, caches, docs.
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb \
       "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/var/log/*

tar --numeric-owner -C "$rootfs" -c . | "$BACKEND" import \
  --change "ENV LANG=C.UTF-8" \
  --change "ENV PIP_BREAK_SYSTEM_PACKAGES=1" \
  --change "ENV SSL_CERT_FILE=$CA_BUNDLE" \
  --change "LABEL $LABEL=$ca_sha" \
  --change 'CMD ["python3"]' \
  - "$IMAGE" >/dev/null
echo "$IMAGE: made from $SUITE ($("$BACKEND" run --rm "$IMAGE" python3 --version 2>&1 || echo 'python3 not runnable'))"
