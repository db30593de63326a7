package loomflow_test

import (
	"context"
	"net"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	loomflowv1 "github.com/loomflow/loomflow/clients/go/gen/loomflow/v1"
	"github.com/loomflow/loomflow/clients/go/loomflow"
)

func TestValidateRequestNamesEveryBrokenField(t *testing.T) {
	req := &loomflowv1.RecallRequest{
		Scope: &loomflowv1.UserScope{Kind: &loomflowv1.UserScope_UserId{UserId: "__jeeves_anon_user__"}},
		Limit: -1,
	}
	err := loomflow.ValidateRequest(req)
	if !loomflow.IsInvalidArgument(err) {
		t.Fatalf("ValidateRequest = %v, want INVALID_ARGUMENT", err)
	}
	fields := loomflow.ViolatedFields(err)
	for _, want := range []string{"scope.user_id", "query", "limit"} {
		if !slices.Contains(fields, want) {
			t.Errorf("violated fields %v lack %q", fields, want)
		}
	}
}

func TestValidateRequestRequiresTheScope(t *testing.T) {
	err := loomflow.ValidateRequest(&loomflowv1.GetStatusRequest{})
	if got := loomflow.ViolatedFields(err); !slices.Equal(got, []string{"scope"}) {
		t.Fatalf("violated fields %v, want [scope]", got)
	}
	err = loomflow.ValidateRequest(&loomflowv1.GetStatusRequest{Scope: &loomflowv1.UserScope{}})
	if got := loomflow.ViolatedFields(err); !slices.Equal(got, []string{"scope.kind"}) {
		t.Fatalf("violated fields %v, want [scope.kind]", got)
	}
}

func TestValidateRequestAcceptsAValidRequest(t *testing.T) {
	req := &loomflowv1.RecallRequest{Scope: loomflow.AnonymousScope(), Query: "weather"}
	if err := loomflow.ValidateRequest(req); err != nil {
		t.Fatalf("ValidateRequest(valid) = %v", err)
	}
}

// closedAddress is a loopback address nothing listens on.
func closedAddress(t *testing.T) string {
	t.Helper()
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	address := listener.Addr().String()
	if err := listener.Close(); err != nil {
		t.Fatal(err)
	}
	return address
}

func TestWithValidationRefusesBadRequestsWithoutContactingTheServer(t *testing.T) {
	// Nothing listens at the address: a request that reached the wire would
	// fail UNAVAILABLE, so INVALID_ARGUMENT proves the refusal was local.
	client, err := loomflow.Dial(closedAddress(t), loomflow.WithInsecure(), loomflow.WithValidation())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	sentinel := &loomflowv1.UserScope{Kind: &loomflowv1.UserScope_UserId{UserId: "__jeeves_anon_user__"}}

	_, err = client.Memory.Recall(ctx, &loomflowv1.RecallRequest{Scope: sentinel, Query: "x"})
	if !loomflow.IsInvalidArgument(err) || !slices.Equal(loomflow.ViolatedFields(err), []string{"scope.user_id"}) {
		t.Fatalf("unary: %v (fields %v), want INVALID_ARGUMENT on scope.user_id", err, loomflow.ViolatedFields(err))
	}

	stream, err := client.Memory.Export(ctx, &loomflowv1.MemoryServiceExportRequest{Scope: sentinel})
	if err == nil {
		_, err = stream.Recv()
	}
	if !loomflow.IsInvalidArgument(err) {
		t.Fatalf("stream: %v, want INVALID_ARGUMENT", err)
	}

	// A valid request does go out, and so fails for want of a server.
	_, err = client.Memory.Recall(ctx, &loomflowv1.RecallRequest{Scope: loomflow.AnonymousScope(), Query: "x"})
	if loomflow.Code(err) != codes.Unavailable {
		t.Fatalf("valid request: %v, want UNAVAILABLE from the closed port", err)
	}
}

func TestDialRefusesAnEmptyTarget(t *testing.T) {
	if _, err := loomflow.Dial(""); err == nil {
		t.Fatal("Dial accepted an empty target")
	}
}
