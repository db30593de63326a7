#!/usr/bin/env bash
# Installs the pinned Go tools into $(go env GOPATH)/bin: the code generators (make gen,
# check-gen) and grpcurl/ghz (tests/test_grpcurl_recipes.py, tests/test_ghz_smoke.py;
# tests/test_go_client.py needs go itself). `make test`, `make gen` and .ci/run call it;
# `make demo` and `make serve` do not need it. Idempotent: a tool already at its pinned
# version is not reinstalled, so a second run prints nothing and takes no time.
set -euo pipefail
PROTOC_GEN_GO=v1.36.12
PROTOC_GEN_GO_GRPC=v1.6.2
GRPCURL=v1.9.4
GHZ=v0.93.0

if ! command -v go >/dev/null; then
  echo "install-tools: go is not installed; make gen and the grpcurl/ghz/Go tests need it" >&2
  exit 0
fi
bin="$(go env GOPATH)/bin"
started=${PHASE_T0:-$(date +%s)}
install() { # name module version
  local stamp="$bin/.$1-$3"
  if [ -x "$bin/$1" ] && [ -f "$stamp" ]; then return; fi
  echo "=== install-tools: go install $1@$3 (t+$(($(date +%s) - started))s; compiles from source, a few minutes on a busy machine)"
  go install "$2@$3"
  touch "$stamp"
}
install protoc-gen-go google.golang.org/protobuf/cmd/protoc-gen-go "$PROTOC_GEN_GO"
install protoc-gen-go-grpc google.golang.org/grpc/cmd/protoc-gen-go-grpc "$PROTOC_GEN_GO_GRPC"
install grpcurl github.com/fullstorydev/grpcurl/cmd/grpcurl "$GRPCURL"
install ghz github.com/bojand/ghz/cmd/ghz "$GHZ"
