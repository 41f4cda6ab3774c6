#!/usr/bin/env bash
# Regenerates Bert.Models/Text/HfUnicode.Table.cs and Bert.Tests/Text/HfTokenizerCases.txt from Hugging Face's
# tokenizers library (see hf_unicode.cjs): installs it from npm into a temporary folder, runs the script, removes it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
npm install --silent --no-audit --no-fund --prefix "$work" tokenizers@0.23.2 >/dev/null
NODE_PATH="$work/node_modules" node "$here/hf_unicode.cjs"
