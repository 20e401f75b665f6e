#!/usr/bin/env bash
# Checks the tree-sitter grammar: its corpus and highlight tests, that the committed parser is
# the one grammar.js generates, and that every example parses without an error node.
# Needs the tree-sitter CLI (`cargo install tree-sitter-cli`; the npm package downloads a
# binary at install time) and a C compiler.
set -euo pipefail
cd "$(dirname "$0")"
command -v tree-sitter >/dev/null || { echo "tree-sitter grammar test: tree-sitter CLI not installed, skipped"; exit 0; }
tree-sitter generate --abi 14
git diff --exit-code -- src || { echo "src/ is stale: commit the regenerated parser" >&2; exit 1; }
tree-sitter test
status=0
for file in ../../examples/*.vnet; do
  [[ -e $file ]] || continue
  if ! tree-sitter parse --quiet "$file" >/dev/null; then
    echo "error nodes in $file" >&2
    status=1
  fi
done
exit $status
