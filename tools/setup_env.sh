#!/usr/bin/env bash
# Create or repair .venv with the pinned stack, install cosub_mm in editable
# mode, and extract Fashion-MNIST from the Debian package into data/.
# Idempotent: a complete venv whose pins have not changed is reused as is.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
STAMP="$VENV/.cosub_mm-complete"
FMNIST_SRC=${FMNIST_SRC:-/usr/share/datasets/fashion-mnist}
FMNIST_DST=data/fashion_mnist

# Everything the tools and tests import: a missing package means a repair.
CHECK_IMPORTS='import cosub_mm, mmseg.utils, mmseg.models, mmpretrain.models, skimage, matplotlib, pytest, xdist, timm'

pins_hash() { cat requirements/runtime.txt requirements/tests.txt setup.py | sha256sum | cut -d' ' -f1; }

venv_ok() {
  [ -x "$VENV/bin/python" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$(pins_hash)" ] &&
    "$VENV/bin/python" -W ignore -c "$CHECK_IMPORTS" >/dev/null 2>&1
}

if venv_ok; then
  echo "[setup] $VENV is complete, reusing it"
else
  if ! "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
    echo "[setup] creating $VENV with $($PYTHON --version)"
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV"
  else
    echo "[setup] repairing $VENV (missing or changed packages)"
  fi
  start=$(date +%s)
  "$VENV/bin/python" -m pip install --disable-pip-version-check -q \
    -r requirements/runtime.txt -r requirements/tests.txt
  "$VENV/bin/python" -m pip install --disable-pip-version-check -q --no-deps --no-build-isolation -e .
  "$VENV/bin/python" -W ignore -c "$CHECK_IMPORTS"
  pins_hash > "$STAMP"
  echo "[setup] $VENV ready in $(( $(date +%s) - start )) s"
fi

if [ ! -d "$FMNIST_SRC" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "[setup] installing the Debian package dataset-fashion-mnist"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null
  else
    echo "[setup] Fashion-MNIST is missing ($FMNIST_SRC). Run once as root:" >&2
    echo "        sudo apt-get install dataset-fashion-mnist" >&2
    exit 0
  fi
fi
mkdir -p "$FMNIST_DST"
for gz in "$FMNIST_SRC"/*-ubyte.gz; do
  out="$FMNIST_DST/$(basename "$gz" .gz)"
  if [ ! -s "$out" ]; then
    gunzip -c "$gz" > "$out.tmp" && mv "$out.tmp" "$out"
  fi
done
echo "[setup] Fashion-MNIST ready in $FMNIST_DST"
