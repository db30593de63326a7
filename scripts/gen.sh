#!/usr/bin/env bash
# Regenerates every committed artefact derived from proto/: Python messages with
# .pyi stubs and typed gRPC stubs, Go code, and the protoset for ghz/grpcurl.
# CI runs it and then `git diff --exit-code`, so generated code cannot drift.
set -euo pipefail
cd "$(dirname "$0")/.."

PY_OUT=clients/python
GO_OUT=clients/go

# Python: messages (+ .pyi), gRPC stubs and typed .pyi for them; buf/validate under a private
# path (see scripts/gen_python.py).
rm -rf "$PY_OUT/loomflow/v1" "$PY_OUT/loomflow/_vendor" "$PY_OUT/buf"
python scripts/gen_python.py "$PY_OUT"

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

# Protoset for tools that prefer it to reflection. Without json_name, as the Python server's
# reflection serves its descriptors: grpcurl then prints the .proto field names (user_id) both ways,
# where a json_name makes it print camelCase (userId) with the protoset only.
buf build -o clients/loomflow.protoset --as-file-descriptor-set --exclude-source-info
python - <<'PY'
from google.protobuf import descriptor_pb2

path = "clients/loomflow.protoset"
files = descriptor_pb2.FileDescriptorSet.FromString(open(path, "rb").read())


def clear(messages):
    for message in messages:
        for field in [*message.field, *message.extension]:
            field.ClearField("json_name")
        clear(message.nested_type)


for file in files.file:
    clear(file.message_type)
    for extension in file.extension:
        extension.ClearField("json_name")
open(path, "wb").write(files.SerializeToString(deterministic=True))
PY
echo "gen: done"
