package loomflow

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	loomflowv1 "github.com/loomflow/loomflow/clients/go/gen/loomflow/v1"
)

// flakyMemory answers UNAVAILABLE to the first failures calls, then OK.
type flakyMemory struct {
	loomflowv1.UnimplementedMemoryServiceServer
	calls    atomic.Int32
	failures int32
}

func (m *flakyMemory) Recall(context.Context, *loomflowv1.RecallRequest) (*loomflowv1.RecallResponse, error) {
	if m.calls.Add(1) <= m.failures {
		return nil, status.Error(codes.Unavailable, "restarting")
	}
	return &loomflowv1.RecallResponse{}, nil
}

func (m *flakyMemory) Remember(context.Context, *loomflowv1.RememberRequest) (*loomflowv1.RememberResponse, error) {
	m.calls.Add(1)
	return nil, status.Error(codes.Unavailable, "restarting")
}

func serveFlaky(t *testing.T, failures int32) (*flakyMemory, string) {
	t.Helper()
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	server := grpc.NewServer()
	memory := &flakyMemory{failures: failures}
	loomflowv1.RegisterMemoryServiceServer(server, memory)
	go func() { _ = server.Serve(listener) }()
	t.Cleanup(server.Stop)
	return memory, listener.Addr().String()
}

func TestIdempotentCallsAreRetriedOnUnavailableLikeThePythonClient(t *testing.T) {
	memory, address := serveFlaky(t, 2)
	client, err := Dial(address, WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := client.Memory.Recall(ctx, &loomflowv1.RecallRequest{Scope: MustUserScope("alice")}); err != nil {
		t.Fatalf("Recall failed despite retries: %v", err)
	}
	if got := memory.calls.Load(); got != 3 {
		t.Fatalf("server saw %d Recall calls, want 3 (two UNAVAILABLE, then OK)", got)
	}
}

func TestNonIdempotentCallsAreNotRetried(t *testing.T) {
	memory, address := serveFlaky(t, 0)
	client, err := Dial(address, WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = client.Memory.Remember(ctx, &loomflowv1.RememberRequest{Scope: MustUserScope("alice")})
	if !IsUnavailable(err) {
		t.Fatalf("Remember: want UNAVAILABLE, got %v", err)
	}
	if got := memory.calls.Load(); got != 1 {
		t.Fatalf("Remember was sent %d times; a non-idempotent call must be sent once", got)
	}
}

func TestWithRetryNilTurnsRetriesOff(t *testing.T) {
	memory, address := serveFlaky(t, 1)
	client, err := Dial(address, WithInsecure(), WithRetry(nil))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	_, err = client.Memory.Recall(context.Background(), &loomflowv1.RecallRequest{Scope: MustUserScope("alice")})
	if !IsUnavailable(err) || memory.calls.Load() != 1 {
		t.Fatalf("want one UNAVAILABLE call, got %v after %d calls", err, memory.calls.Load())
	}
}
