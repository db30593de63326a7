package loomflow

import (
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Code returns the gRPC status code of err: codes.OK for nil, codes.Unknown
// for an error that carries no status. Wrapped status errors are unwrapped.
func Code(err error) codes.Code { return status.Code(err) }

// IsNotFound reports a scoped look-up that found nothing. A record of another
// tenant answers NOT_FOUND too, so existence never leaks across tenants.
func IsNotFound(err error) bool { return Code(err) == codes.NotFound }

// IsInvalidArgument reports a request the server refused as malformed; see
// [FieldViolations] for which fields and why.
func IsInvalidArgument(err error) bool { return Code(err) == codes.InvalidArgument }

// IsResourceExhausted reports a budget or rate limit that refused the call;
// see [ExceededLimit] for which limit.
func IsResourceExhausted(err error) bool { return Code(err) == codes.ResourceExhausted }

// IsPermissionDenied reports a credential that may not make this call: an end
// user token on an internal service, a token subject that differs from
// scope.user_id, or an operator-only RPC made without an operator token.
func IsPermissionDenied(err error) bool { return Code(err) == codes.PermissionDenied }

// IsUnauthenticated reports a missing, malformed, expired or wrongly signed token.
func IsUnauthenticated(err error) bool { return Code(err) == codes.Unauthenticated }

// IsAborted reports a concurrency conflict, such as a stale expected_version
// on a working block: re-read and retry.
func IsAborted(err error) bool { return Code(err) == codes.Aborted }

// IsUnavailable reports a server or dependency that cannot be reached right
// now; the call may be retried later.
func IsUnavailable(err error) bool { return Code(err) == codes.Unavailable }

// IsFailedPrecondition reports a call the system's current state does not allow.
func IsFailedPrecondition(err error) bool { return Code(err) == codes.FailedPrecondition }

// IsDeadlineExceeded reports a call that ran out of time.
func IsDeadlineExceeded(err error) bool { return Code(err) == codes.DeadlineExceeded }

// FieldViolations returns the google.rpc.BadRequest field violations an
// INVALID_ARGUMENT error carries: Field is a dotted path such as
// "scope.user_id", Description says what is wrong, Reason is the rule id.
// It returns nil when err carries none.
func FieldViolations(err error) []*errdetails.BadRequest_FieldViolation {
	st, ok := status.FromError(err)
	if !ok {
		return nil
	}
	var violations []*errdetails.BadRequest_FieldViolation
	for _, detail := range st.Details() {
		if bad, ok := detail.(*errdetails.BadRequest); ok {
			violations = append(violations, bad.GetFieldViolations()...)
		}
	}
	return violations
}

// ViolatedFields returns just the field paths of [FieldViolations].
func ViolatedFields(err error) []string {
	violations := FieldViolations(err)
	if violations == nil {
		return nil
	}
	fields := make([]string, len(violations))
	for i, v := range violations {
		fields[i] = v.GetField()
	}
	return fields
}

// ExceededLimit returns the name of the limit a RESOURCE_EXHAUSTED error
// reports (google.rpc.ErrorInfo with reason LIMIT_EXCEEDED, metadata "limit"),
// and whether there was one.
func ExceededLimit(err error) (string, bool) {
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.ResourceExhausted {
		return "", false
	}
	for _, detail := range st.Details() {
		if info, ok := detail.(*errdetails.ErrorInfo); ok && info.GetReason() == "LIMIT_EXCEEDED" {
			limit, found := info.GetMetadata()["limit"]
			return limit, found
		}
	}
	return "", false
}
