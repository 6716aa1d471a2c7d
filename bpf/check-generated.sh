#!/usr/bin/env bash
# Fails when the committed bpf2go output (flowlens_*_bpfel.{go,o}) differs
# from what the C sources produce now. Regenerates into a temporary
# directory with the exact //go:generate line of gen.go, so the working tree
# is not touched. Needs clang; `make lint` runs it.
set -euo pipefail
cd "$(dirname "$0")"
command -v "${BPF2GO_CC:-clang}" >/dev/null || { echo "check-generated: clang not found" >&2; exit 2; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
line=$(sed -n 's#^//go:generate go tool bpf2go ##p' gen.go)
[ -n "$line" ] || { echo "check-generated: no bpf2go line in gen.go" >&2; exit 2; }
# shellcheck disable=SC2086 # the generate line is split into words on purpose
GOPACKAGE=bpf GOFILE=gen.go go tool bpf2go -output-dir "$tmp" $line >/dev/null
status=0
for f in "$tmp"/*; do
	name=$(basename "$f")
	if ! cmp -s "$f" "$name"; then
		echo "check-generated: bpf/$name is out of date; run make generate" >&2
		status=1
	fi
done
exit $status
