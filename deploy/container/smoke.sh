#!/bin/sh
# Build the image and run the compose file: one bootstrap node, two daemons; pass when
# each daemon lists the other as a live peer. Needs a container engine (docker or
# podman with compose); exits 77 (skipped) without one. Nothing in CI runs this.
set -eu
cd "$(dirname "$0")/../.."
if docker info >/dev/null 2>&1; then engine=docker
elif podman info >/dev/null 2>&1; then engine=podman
else echo "smoke.sh: no container engine answers (docker info / podman info); skipped"; exit 77
fi
compose="$engine compose -f deploy/container/compose.yaml -p distro-train-smoke"
trap '$compose down -v >/dev/null 2>&1 || true' EXIT
$compose up --build -d
deadline=$(( $(date +%s) + 180 ))
for svc in daemon-1 daemon-2; do
    until $compose exec -T "$svc" distro-train peers --json 2>/dev/null \
            | python3 -c 'import json,sys; sys.exit(0 if len(json.load(sys.stdin)) >= 1 else 1)'; do
        [ "$(date +%s)" -lt "$deadline" ] || { echo "smoke.sh: $svc sees no peer"; $compose logs; exit 1; }
        sleep 2
    done
    echo "smoke.sh: $svc sees its peer"
done
$compose exec -T daemon-1 distro-train doctor || true
echo "smoke.sh: passed"
