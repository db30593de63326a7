package loomflow_test

import (
	"errors"
	"fmt"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/loomflow/loomflow/clients/go/loomflow"
)

func statusWith(t *testing.T, code codes.Code, details ...*errdetails.ErrorInfo) error {
	t.Helper()
	st := status.New(code, "refused")
	for _, d := range details {
		var err error
		if st, err = st.WithDetails(d); err != nil {
			t.Fatal(err)
		}
	}
	return st.Err()
}

func TestCodePredicatesSeeThroughWrappedErrors(t *testing.T) {
	predicates := map[codes.Code]func(error) bool{
		codes.NotFound:           loomflow.IsNotFound,
		codes.InvalidArgument:    loomflow.IsInvalidArgument,
		codes.ResourceExhausted:  loomflow.IsResourceExhausted,
		codes.PermissionDenied:   loomflow.IsPermissionDenied,
		codes.Unauthenticated:    loomflow.IsUnauthenticated,
		codes.Aborted:            loomflow.IsAborted,
		codes.Unavailable:        loomflow.IsUnavailable,
		codes.FailedPrecondition: loomflow.IsFailedPrecondition,
		codes.DeadlineExceeded:   loomflow.IsDeadlineExceeded,
	}
	for code, is := range predicates {
		err := fmt.Errorf("reading episode: %w", status.Error(code, "x"))
		if !is(err) {
			t.Errorf("predicate for %v is false for a wrapped %v error", code, code)
		}
		if is(status.Error(codes.Internal, "x")) || is(nil) || is(errors.New("plain")) {
			t.Errorf("predicate for %v is true for an unrelated error", code)
		}
	}
}

func TestExceededLimitReadsTheErrorInfoMetadata(t *testing.T) {
	err := statusWith(t, codes.ResourceExhausted, &errdetails.ErrorInfo{
		Reason: "LIMIT_EXCEEDED", Domain: "loomflow", Metadata: map[string]string{"limit": "user total_tokens daily"},
	})
	limit, ok := loomflow.ExceededLimit(err)
	if !ok || limit != "user total_tokens daily" {
		t.Fatalf("ExceededLimit = %q, %v", limit, ok)
	}
	if _, ok := loomflow.ExceededLimit(statusWith(t, codes.ResourceExhausted)); ok {
		t.Fatal("ExceededLimit found a limit in a status without ErrorInfo")
	}
	if _, ok := loomflow.ExceededLimit(errors.New("plain")); ok {
		t.Fatal("ExceededLimit found a limit in a non-status error")
	}
}

func TestFieldViolationsIsEmptyWithoutBadRequest(t *testing.T) {
	if got := loomflow.FieldViolations(status.Error(codes.InvalidArgument, "x")); got != nil {
		t.Fatalf("FieldViolations = %v, want nil", got)
	}
	if got := loomflow.ViolatedFields(nil); got != nil {
		t.Fatalf("ViolatedFields(nil) = %v, want nil", got)
	}
}
