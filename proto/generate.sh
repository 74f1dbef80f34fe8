#!/usr/bin/env bash
# Regenerate protocols/pb/ from proto/*.proto. The output is checked in, so a
# normal install needs no protoc; run this after editing a .proto file.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
"$PY" -m grpc_tools.protoc -Iproto --python_out=protocols/pb \
  --plugin=protoc-gen-mypy=.venv/bin/protoc-gen-mypy --mypy_out=protocols/pb proto/*.proto
