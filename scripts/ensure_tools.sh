#!/usr/bin/env bash
# The test suite drives DCMTK's storescu/echoscu as an independent DICOM client. Install
# Debian's dcmtk when missing (needs root, as on this project's machines); otherwise say how.
set -euo pipefail
if command -v storescu >/dev/null && command -v echoscu >/dev/null; then
  exit 0
fi
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
  echo "installing DCMTK (Debian package dcmtk) for the DICOM gateway tests"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dcmtk >/dev/null
  exit 0
fi
echo "DCMTK (storescu, echoscu) is needed by the tests: install the dcmtk package." >&2
exit 2
