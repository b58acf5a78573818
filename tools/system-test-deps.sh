#!/usr/bin/env bash
# System packages the test suite uses when it can have them, installed by `make test`:
#   chromium               the browser the explorer's tests drive through Playwright (its own download is not used)
#   dataset-fashion-mnist  Debian's Fashion-MNIST, so the tests check the pinned checksums against the real files.
# Best effort: without root or apt-get, or offline, it says so and the tests that need a package skip.
set -u
missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ -d /usr/share/datasets/fashion-mnist ] || missing+=(dataset-fashion-mnist)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "note: not installing ${missing[*]} (needs root and apt-get); the tests that use them will skip"
    exit 0
fi
echo "installing ${missing[*]} with apt-get"
if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1; then
    apt-get update -qq >/dev/null 2>&1
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1 \
        || echo "note: apt-get could not install ${missing[*]}; the tests that use them will skip"
fi
exit 0
