#!/usr/bin/env bash
# Static analysis of chainaudit's own Solidity contracts with slither.
#
#   scripts/run_slither.sh                              # whole project (contracts/, no tests)
#   scripts/run_slither.sh contracts/SupplyChainEscrow.sol   # one contract
#
# Exits non-zero when slither reports any finding of medium or high impact in the project's
# own contracts (node_modules/ and contracts/test/ are filtered out by slither.config.json).
# Every remaining finding is fixed, or justified by a comment at the code next to a
# `slither-disable-next-line <detector>` annotation.
#
# Works offline: slither compiles through forge (the pinned npm @foundry-rs/forge, which uses
# the solc shim in tools/solc), into a private output directory so that concurrent forge runs
# and their caches are not disturbed ("forge clean" is never run).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

slither_bin="${SLITHER:-$root/.venv/bin/slither}"
if [[ ! -x "$slither_bin" ]]; then
  echo "run_slither: $slither_bin not found; install it with: .venv/bin/pip install slither-analyzer" >&2
  exit 2
fi
if [[ ! -x "$root/node_modules/.bin/forge" ]]; then
  echo "run_slither: node_modules/.bin/forge not found; run: npm ci" >&2
  exit 2
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# Prefer the platform binary of the npm forge package: the node_modules/.bin/forge wrapper of
# @foundry-rs/forge 1.7.1 exits 0 even when forge fails.
forge_dir="$root/node_modules/.bin"
for candidate in "$root"/node_modules/@foundry-rs/forge-*/bin; do
  if [[ -x "$candidate/forge" ]]; then forge_dir="$candidate"; break; fi
done
export PATH="$forge_dir:$PATH"
export FOUNDRY_OUT="$work/out"
export FOUNDRY_CACHE_PATH="$work/cache"

target="${1:-.}"
# --fail-medium: exit 1 on a medium or high finding; lower impacts are printed, not fatal.
exec "$slither_bin" "$target" --config-file "$root/slither.config.json" --fail-medium "${@:2}"
