#!/usr/bin/env bash
# Independent clients the test suite drives: DCMTK's storescu/echoscu (DICOM gateway tests),
# Debian's Chromium (Playwright browser tests), CJK fonts and Pango (printed reports, screenshots)
# and zbar-tools (decoding the printed reports' QR codes).
# Installs Debian's packages when missing (needs root, as on this project's machines); otherwise
# says what to install.
set -euo pipefail
missing=()
command -v storescu >/dev/null && command -v echoscu >/dev/null || missing+=(dcmtk)
command -v chromium >/dev/null || missing+=(chromium)
fc-list 2>/dev/null | grep -i "Noto Sans CJK" >/dev/null || missing+=(fonts-noto-cjk)
# WeasyPrint (printed reports) loads Pango at run time; zbarimg decodes the printed QR codes in tests.
ldconfig -p 2>/dev/null | grep "libpangoft2-1.0.so.0" >/dev/null || missing+=(libpango-1.0-0 libpangoft2-1.0-0)
command -v zbarimg >/dev/null || missing+=(zbar-tools)
# Node and npm build the viewer's Cornerstone3D bundle (make bundle).
command -v npm >/dev/null || missing+=(nodejs npm)
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
