#!/bin/sh
# crossrank's container entrypoint.
#   entrypoint.sh prefetch MODEL...  download and export cross-encoders into $HF_HOME (used by `docker build`)
#   entrypoint.sh [serve] [ARGS...]  crossrank serve ARGS, its ONNX Runtime threads set from the
#                                    container's CPU limit unless CROSSRANK_THREADS is given
# exec: crossrank becomes PID 1 and gets SIGTERM itself (readiness goes 503 at once, then it drains).
set -eu

CPU_MAX_FILE="${CROSSRANK_CPU_MAX_FILE:-/sys/fs/cgroup/cpu.max}"

# The CPU limit in whole cores, rounded up: cgroup v2 cpu.max is "QUOTA PERIOD" or "max PERIOD".
cpu_limit() {
    if [ -r "$CPU_MAX_FILE" ]; then
        read -r quota period < "$CPU_MAX_FILE" || true
        case "${quota:-max}${period:-x}" in
            max*|*[!0-9]*) ;;
            *) if [ "$period" -gt 0 ]; then echo $(( (quota + period - 1) / period )); return; fi ;;
        esac
    fi
    nproc
}

if [ "${1:-}" = "prefetch" ]; then
    shift
    if [ "$#" -eq 0 ]; then
        exit 0
    fi
    exec "${CROSSRANK_PYTHON:-python}" -c 'import sys
from crossrank import Reranker
for name in sys.argv[1:]:
    Reranker(name)
    print("crossrank: prefetched", name, flush=True)
' "$@"
fi

if [ "${1:-}" = "serve" ]; then
    shift
fi
if [ -z "${CROSSRANK_THREADS:-}" ]; then
    CROSSRANK_THREADS="$(cpu_limit)"
    export CROSSRANK_THREADS
fi
exec "${CROSSRANK_BIN:-crossrank}" serve "$@"
