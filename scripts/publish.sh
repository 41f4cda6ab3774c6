#!/usr/bin/env bash
# Self-contained single-file `bert` for linux-x64 (no .NET needed where it runs, e.g. the GPU machine) in publish/.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dotnet publish "$root/Bert.Models" -c Release -r linux-x64 --self-contained -p:PublishSingleFile=true \
  -p:InvariantGlobalization=true -p:IncludeNativeLibrariesForSelfExtract=true -p:EnableCompressionInSingleFile=true -o "$root/publish"
rm -f "$root"/publish/*.pdb "$root"/publish/*.xml   # the single file is all that travels
ls -la "$root/publish/bert"
