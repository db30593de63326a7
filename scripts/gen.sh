#!/usr/bin/env bash
# Regenerates every committed artefact derived from proto/: Python messages with
# .pyi stubs and typed gRPC stubs, Go code, and the protoset for ghz/grpcurl.
# CI runs it and then `git diff --exit-code`, so generated code cannot drift.
set -euo pipefail
cd "$(dirname "$0")/.."

PY_OUT=clients/python
GO_OUT=clients/go
PROTO_FILES=$(cd proto && find loomflow -name '*.proto' | sort)

# Python: messages (+ .pyi), gRPC stubs, and typed .pyi for the gRPC stubs.
rm -rf "$PY_OUT/loomflow/v1" "$PY_OUT/buf"
mkdir -p "$PY_OUT/loomflow/v1" "$PY_OUT/buf/validate"
python -m grpc_tools.protoc -I proto -I third_party/protovalidate \
  --python_out="$PY_OUT" --pyi_out="$PY_OUT" \
  --grpc_python_out="$PY_OUT" --mypy_grpc_out="$PY_OUT" \
  $PROTO_FILES
python -m grpc_tools.protoc -I third_party/protovalidate \
  --python_out="$PY_OUT" --pyi_out="$PY_OUT" buf/validate/validate.proto
# Regular packages so type checkers and wheels see them; `loomflow/` itself stays
# a namespace package shared with services/.
touch "$PY_OUT/loomflow/v1/__init__.py" "$PY_OUT/loomflow/v1/py.typed" \
  "$PY_OUT/buf/__init__.py" "$PY_OUT/buf/validate/__init__.py"

# Go client's sentinel look-alike table, from the server's folding (kernel/lookalikes.py).
PYTHONPATH="services:clients/python${PYTHONPATH:+:$PYTHONPATH}" python scripts/gen_lookalikes.py
gofmt -l clients/go/loomflow/lookalikes_table.go | (! grep .)

# Go: buf with local plugins (see buf.gen.yaml).
if command -v protoc-gen-go >/dev/null && command -v protoc-gen-go-grpc >/dev/null; then
  buf generate
  # The generated Go must build against the versions clients/go/go.mod pins
  # (grpc-go paired with protoc-gen-go-grpc, the protovalidate module).
  if command -v go >/dev/null; then
    (cd "$GO_OUT" && go build ./...)
  fi
else
  echo "gen: protoc-gen-go / protoc-gen-go-grpc not on PATH; run scripts/install-tools.sh" >&2
  exit 1
fi

# Protoset for tools that prefer it to reflection.
buf build -o clients/loomflow.protoset --as-file-descriptor-set --exclude-source-info
echo "gen: done"
