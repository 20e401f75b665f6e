#!/usr/bin/env bash
# Checks the Neovim support headlessly: filetype detection, syntax highlighting and, with
# vnet-lsp on PATH, the language server attaching. Needs `nvim` (0.7+).
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
command -v nvim >/dev/null || { echo "neovim test: nvim not installed, skipped"; exit 0; }
nvim --headless -u NONE -i NONE -n \
  --cmd "set runtimepath^=$here" --cmd "filetype plugin on" --cmd "syntax on" \
  "$here/test/sample.vnet" -c "luafile $here/test/check.lua" 2>&1
