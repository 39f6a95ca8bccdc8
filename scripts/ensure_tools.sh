#!/usr/bin/env bash
# Independent clients the test suite drives: DCMTK's storescu/echoscu (DICOM gateway tests),
# Debian's Chromium (Playwright browser tests) and CJK fonts (printed reports, screenshots).
# Installs Debian's packages when missing (needs root, as on this project's machines); otherwise
# says what to install.
set -euo pipefail
missing=()
command -v storescu >/dev/null && command -v echoscu >/dev/null || missing+=(dcmtk)
command -v chromium >/dev/null || missing+=(chromium)
fc-list 2>/dev/null | grep -qi "Noto Sans CJK" || missing+=(fonts-noto-cjk)
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
  echo "installing Debian packages the tests need: ${missing[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  exit 0
fi
echo "The tests need these Debian packages: ${missing[*]}" >&2
exit 2
