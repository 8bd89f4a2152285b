#!/bin/sh
# setup-base.sh builder|runtime: the Debian packages a stage needs, on whichever Debian 12
# base the image is built from (BASE_IMAGE): python:3.11-slim-bookworm brings its own Python,
# a plain Debian 12 base gets Python 3.11 from apt. Extra CA certificates copied into
# /usr/local/share/ca-certificates/modelserve/ (deploy/docker/ca-certificates/*.crt, e.g. a
# TLS-intercepting proxy's) join the system store that pip, httpx and requests use.
set -eu
ROLE=$1
PACKAGES="ca-certificates"
case "$ROLE" in
    builder)
        python3 -c 'import ensurepip, venv' 2>/dev/null || PACKAGES="$PACKAGES python3 python3-venv"
        # The compiler only when llama.cpp is built here (no wheel in the wheelhouse).
        ls /wheelhouse/llama_cpp_python-*.whl >/dev/null 2>&1 \
            || PACKAGES="$PACKAGES build-essential cmake git"
        ;;
    runtime)
        command -v python3 >/dev/null || PACKAGES="$PACKAGES python3"
        # libgomp1: llama.cpp's OpenMP threads; espeak-ng: phonemes for Piper voices
        # (text-to-speech), run as a separate program.
        PACKAGES="$PACKAGES libgomp1 espeak-ng"
        ;;
    *) echo "usage: setup-base.sh builder|runtime" >&2; exit 2 ;;
esac
# Package versions are not pinned: the base image pins the Debian release, and exact versions
# vanish from the archive with each security update.
apt-get update
# shellcheck disable=SC2086
DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $PACKAGES
rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb
update-ca-certificates
