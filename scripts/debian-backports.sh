#!/bin/sh
# Install PACKAGE... from Debian 12's bookworm-backports suite, by name, and
# nothing else from it: `make deps` uses this for libvirt 11 (passt support).
#
# The suite is added with the mirror and keyring the machine's own Debian
# source already uses (deb822 /etc/apt/sources.list.d/*.sources, or a
# one-line /etc/apt/sources.list entry); no host name is written here.
# Before installing, apt's simulation must show that every package it would
# take from backports is one named here or a library of theirs
# (lib*, never systemd, udev or the like); otherwise nothing is installed.
# On a machine that is not Debian 12 the stock packages are installed.
set -eu
[ $# -gt 0 ] || { echo "usage: $0 PACKAGE..." >&2; exit 2; }
. /etc/os-release
if [ "${VERSION_CODENAME:-}" != bookworm ]; then
  echo "not Debian 12: installing the stock $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"
  exit 0
fi

SOURCE=/etc/apt/sources.list.d/vmnet-bookworm-backports.sources
if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
  stanza=$(awk '
    BEGIN { RS = ""; FS = "\n" }
    /(^|\n)Suites:[^\n]*[ \t]bookworm([ \t]|$|\n)|(^|\n)Suites:[ \t]*bookworm([ \t\n]|$)/ {
      uris = ""; key = ""
      for (i = 1; i <= NF; i++) {
        if ($i ~ /^URIs:/) uris = substr($i, 6)
        if ($i ~ /^Signed-By:/) key = substr($i, 11)
      }
      if (uris != "") { print uris "|" key; exit }
    }' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
  if [ -n "$stanza" ]; then
    uris=$(echo "${stanza%%|*}" | xargs)
    key=$(echo "${stanza#*|}" | xargs)
    {
      echo "Types: deb"
      echo "URIs: $uris"
      echo "Suites: bookworm-backports"
      echo "Components: main"
      [ -n "$key" ] && echo "Signed-By: $key"
    } > "$SOURCE"
  else
    line=$(grep -hE '^deb (\[[^]]*\] )?[a-z]+://[^ ]+ bookworm( |$)' /etc/apt/sources.list 2>/dev/null | head -n 1 || true)
    [ -n "$line" ] || { echo "no Debian 12 apt source to derive bookworm-backports from" >&2; exit 1; }
    echo "$line" | sed -E 's/ bookworm( |$)/ bookworm-backports\1/; s/ bookworm-backports .*/ bookworm-backports main/' \
      > /etc/apt/sources.list.d/vmnet-bookworm-backports.list
  fi
  echo "added bookworm-backports from the machine's own Debian source"
  apt-get update -qq
fi

missing=""
for p in "$@"; do
  version=$(dpkg-query -W -f='${Status} ${Version}\n' "$p" 2>/dev/null || true)
  case "$version" in
    "install ok installed "*bpo12*) ;;
    *) missing="$missing $p" ;;
  esac
done
[ -n "$missing" ] || exit 0

targets=$(for p in $missing; do printf '%s/bookworm-backports ' "$p"; done)
# shellcheck disable=SC2086
plan=$(apt-get -s -y --no-install-recommends install $targets)
taken=$(echo "$plan" | awk '/^Inst / && /bookworm-backports/ { print $2 }')
for p in $taken; do
  case " $* " in *" $p "*) continue ;; esac
  case "$p" in
    lib*) ;;
    *) echo "refusing: bookworm-backports would also bring $p" >&2; exit 1 ;;
  esac
done
for p in systemd udev libsystemd0 libudev1; do
  if echo "$taken" | grep -qx "$p"; then
    echo "refusing: bookworm-backports would upgrade $p" >&2; exit 1
  fi
done
echo "installing from bookworm-backports:" $taken
# shellcheck disable=SC2086
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $targets
