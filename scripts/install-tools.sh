#!/usr/bin/env bash
# Installs the pinned Go tools (code generators, grpcurl, ghz) into $(go env GOPATH)/bin.
# Idempotent: a tool already at its pinned version is not reinstalled.
set -euo pipefail
PROTOC_GEN_GO=v1.36.12
PROTOC_GEN_GO_GRPC=v1.6.2
GRPCURL=v1.9.4
GHZ=v0.93.0

bin="$(go env GOPATH)/bin"
install() { # name module version
  local stamp="$bin/.$1-$3"
  if [ -x "$bin/$1" ] && [ -f "$stamp" ]; then return; fi
  echo "install-tools: $1@$3" >&2
  go install "$2@$3"
  touch "$stamp"
}
install protoc-gen-go google.golang.org/protobuf/cmd/protoc-gen-go "$PROTOC_GEN_GO"
install protoc-gen-go-grpc google.golang.org/grpc/cmd/protoc-gen-go-grpc "$PROTOC_GEN_GO_GRPC"
install grpcurl github.com/fullstorydev/grpcurl/cmd/grpcurl "$GRPCURL"
install ghz github.com/bojand/ghz/cmd/ghz "$GHZ"
