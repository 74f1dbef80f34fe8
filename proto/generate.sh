#!/usr/bin/env bash
# protocols/pb/ from proto/distro.proto, with the dev venv's protoc (grpcio-tools).
#
#   proto/generate.sh          write distro_pb2.py and distro_pb2.pyi; run it after
#                              editing the .proto and commit distro_pb2.py
#   proto/generate.sh --check  write distro_pb2.pyi; fail if the checked-in
#                              distro_pb2.py differs from a fresh one (make lint)
#
# distro_pb2.py is checked in, so a normal install needs no protoc. distro_pb2.pyi
# (mypy-protobuf's typed stub, which mypy --strict checks every message built or read
# against) is not: make lint writes it from the .proto, so it cannot go stale.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
"$PY" -m grpc_tools.protoc -Iproto --python_out="$out" \
  --plugin=protoc-gen-mypy="$(dirname "$PY")/protoc-gen-mypy" --mypy_out=quiet:"$out" proto/*.proto
cp "$out"/*.pyi protocols/pb/
if [ "${1:-}" = --check ]; then
  for f in "$out"/*_pb2.py; do
    cmp -s "$f" "protocols/pb/$(basename "$f")" || {
      echo "protocols/pb/$(basename "$f") is stale: run proto/generate.sh and commit it" >&2
      exit 1
    }
  done
else
  cp "$out"/*_pb2.py protocols/pb/
fi
