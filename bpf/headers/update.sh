#!/usr/bin/env bash
# Copies the libbpf BPF-side headers flowlens compiles against from the
# system's libbpf-dev (Debian: /usr/include/bpf) so `make generate` does not
# depend on which libbpf the build machine has. Re-run after a libbpf upgrade
# and commit the result.
set -euo pipefail
src=${LIBBPF_INCLUDE:-/usr/include/bpf}
cd "$(dirname "$0")"
for h in bpf_helpers.h bpf_helper_defs.h bpf_endian.h bpf_core_read.h bpf_tracing.h; do
	cp "$src/$h" "$h"
done
dpkg-query -W -f='libbpf-dev ${Version}\n' libbpf-dev >LIBBPF_VERSION 2>/dev/null || echo "unknown" >LIBBPF_VERSION
