#!/bin/sh
# Prepares a build of FerretDB 1.24.2 with one defect fixed, and prints the go.mod to build with
# (`go build -modfile=<printed path>`).
#
# The defect (internal/handler/msg_update.go, updateDocument): an update command closes each
# statement's query iterator with a `defer` inside the loop over its statements, so every
# statement's SQLite connection stays checked out until the whole command returns, while each
# statement also needs one more connection for its transaction. A bulk of 100 replaces (or a few
# smaller bulks at once) therefore takes all 100 connections of FerretDB's pool and waits forever
# for one more: every client of the database then stalls for good. The fix closes each
# statement's iterator as soon as its update is done.
#
# Go builds cannot overlay files in the module cache, so the module is copied to OUTDIR/FerretDB,
# edited there, and OUTDIR/go.mod is this directory's go.mod with a `replace` to the copy. Both
# builds (scripts/ferretdb.mjs and the Dockerfile's Go stage) use it; the edit must apply
# exactly, or the build stops.
set -eu
out=${1:?usage: patch-ferretdb.sh OUTDIR}
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"
go mod download github.com/FerretDB/FerretDB
dir=$(go list -m -f '{{.Dir}}' github.com/FerretDB/FerretDB)
mkdir -p "$out"
out=$(cd "$out" && pwd)
rm -rf "$out/FerretDB"
cp -R "$dir" "$out/FerretDB"
chmod -R u+w "$out/FerretDB"
file="$out/FerretDB/internal/handler/msg_update.go"
awk '
  $0 == "\t\tdefer closer.Close()" { dropped++; next }
  { print }
  $0 == "\t\tresult, err := common.UpdateDocument(ctx, c, \"update\", iter, &u)" { print "\t\tcloser.Close() // vigil: release this statement'"'"'s connection now (tools/ferretdb/patch-ferretdb.sh)"; closed++ }
  END { if (dropped != 1 || closed != 1) { print "patch-ferretdb.sh: msg_update.go no longer has the code this fix edits" > "/dev/stderr"; exit 1 } }
' "$dir/internal/handler/msg_update.go" > "$file"
{ cat go.mod; printf '\nreplace github.com/FerretDB/FerretDB => %s/FerretDB\n' "$out"; } > "$out/go.mod"
cp go.sum "$out/go.sum"
echo "$out/go.mod"
