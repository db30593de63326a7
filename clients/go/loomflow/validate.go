package loomflow

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"buf.build/go/protovalidate"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	loomflowv1 "github.com/loomflow/loomflow/clients/go/gen/loomflow/v1"
)

// ValidateRequest checks msg against the protovalidate rules declared in its
// .proto, exactly as the server's interceptor does. It returns nil for a valid
// message, and otherwise an INVALID_ARGUMENT status error carrying a
// google.rpc.BadRequest with one field violation per broken rule, so
// [IsInvalidArgument] and [FieldViolations] read it like a server answer.
//
// Like the server, it also refuses a scope.user_id that reads as the anonymous
// sentinel ([ReadsAsSentinel]), which CEL rules cannot express.
func ValidateRequest(msg proto.Message) error {
	err := protovalidate.Validate(msg)
	if err == nil {
		if id, ok := scopeUserID(msg); ok && ReadsAsSentinel(id) {
			return invalidArgument(msg, []*errdetails.BadRequest_FieldViolation{{
				Field: "scope.user_id", Description: sentinelMessage, Reason: sentinelRuleID,
			}})
		}
		return nil
	}
	var invalid *protovalidate.ValidationError
	if !errors.As(err, &invalid) {
		// A rule that cannot compile or run is a bug in the contract, not bad input.
		return status.Errorf(codes.Internal, "loomflow: validating %s: %v", msg.ProtoReflect().Descriptor().Name(), err)
	}
	violations := make([]*errdetails.BadRequest_FieldViolation, 0, len(invalid.Violations))
	for _, v := range invalid.Violations {
		violations = append(violations, &errdetails.BadRequest_FieldViolation{
			Field:       protovalidate.FieldPathString(v.Proto.GetField()),
			Description: v.Proto.GetMessage(),
			Reason:      v.Proto.GetRuleId(),
		})
	}
	return invalidArgument(msg, violations)
}

// The server's wording and violation id for a look-alike of the sentinel.
const (
	sentinelMessage = "user_id must not be the reserved anonymous sentinel; set scope.anonymous instead"
	sentinelRuleID  = "user_id.not_reserved"
)

// scopeUserID is the user id in msg's scope field, if msg has one naming a user.
func scopeUserID(msg proto.Message) (string, bool) {
	reflected := msg.ProtoReflect()
	field := reflected.Descriptor().Fields().ByName("scope")
	if field == nil || field.Message() == nil || !reflected.Has(field) {
		return "", false
	}
	scope, ok := reflected.Get(field).Message().Interface().(*loomflowv1.UserScope)
	if !ok {
		return "", false
	}
	id, named := scope.GetKind().(*loomflowv1.UserScope_UserId)
	if !named {
		return "", false
	}
	return id.UserId, true
}

// invalidArgument is the INVALID_ARGUMENT status the server would answer, with its BadRequest details.
func invalidArgument(msg proto.Message, violations []*errdetails.BadRequest_FieldViolation) error {
	bad := &errdetails.BadRequest{FieldViolations: violations}
	summary := make([]string, 0, len(violations))
	for _, v := range violations {
		field := v.GetField()
		if field == "" {
			field = "(message)"
		}
		summary = append(summary, fmt.Sprintf("%s: %s", field, v.GetDescription()))
	}
	st := status.New(codes.InvalidArgument,
		fmt.Sprintf("invalid %s: %s", msg.ProtoReflect().Descriptor().Name(), strings.Join(summary, "; ")))
	if detailed, detailErr := st.WithDetails(bad); detailErr == nil {
		st = detailed
	}
	return st.Err()
}

// UnaryValidationInterceptor validates each unary request with
// [ValidateRequest] and fails the call locally, without sending it, when the
// request is invalid.
func UnaryValidationInterceptor() grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn,
		invoker grpc.UnaryInvoker, opts ...grpc.CallOption,
	) error {
		if err := validateAny(req); err != nil {
			return err
		}
		return invoker(ctx, method, req, reply, cc, opts...)
	}
}

// StreamValidationInterceptor validates the request of loomflow's
// server-streaming RPCs with [ValidateRequest] before the stream is opened,
// so an invalid request never leaves the process. (Streams that send several
// messages are validated message by message instead.)
func StreamValidationInterceptor() grpc.StreamClientInterceptor {
	return func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string,
		streamer grpc.Streamer, opts ...grpc.CallOption,
	) (grpc.ClientStream, error) {
		if desc.ClientStreams {
			stream, err := streamer(ctx, desc, cc, method, opts...)
			if err != nil {
				return nil, err
			}
			return &validatingStream{ClientStream: stream}, nil
		}
		open := func() (grpc.ClientStream, error) { return streamer(ctx, desc, cc, method, opts...) }
		return &deferredStream{ctx: ctx, open: open}, nil
	}
}

// validatingStream checks each message a client-streaming call sends.
type validatingStream struct {
	grpc.ClientStream
}

func (s *validatingStream) SendMsg(m any) error {
	if err := validateAny(m); err != nil {
		return err
	}
	return s.ClientStream.SendMsg(m)
}

// deferredStream opens a server-streaming call only once its single request
// has passed validation. Generated stubs call SendMsg first, then CloseSend,
// then RecvMsg; until the stream is open the other methods answer for it.
type deferredStream struct {
	ctx    context.Context
	open   func() (grpc.ClientStream, error)
	stream grpc.ClientStream
	err    error // why the stream could not be opened
}

var errNotSent = status.Error(codes.Internal, "loomflow: stream used before its request was sent")

func (s *deferredStream) SendMsg(m any) error {
	if s.stream == nil {
		if s.err != nil {
			return s.err
		}
		if s.err = validateAny(m); s.err != nil {
			return s.err
		}
		if s.stream, s.err = s.open(); s.err != nil {
			return s.err
		}
	}
	return s.stream.SendMsg(m)
}

func (s *deferredStream) pending() error {
	if s.err != nil {
		return s.err
	}
	return errNotSent
}

func (s *deferredStream) RecvMsg(m any) error {
	if s.stream == nil {
		return s.pending()
	}
	return s.stream.RecvMsg(m)
}

func (s *deferredStream) Header() (metadata.MD, error) {
	if s.stream == nil {
		return nil, s.pending()
	}
	return s.stream.Header()
}

func (s *deferredStream) Trailer() metadata.MD {
	if s.stream == nil {
		return nil
	}
	return s.stream.Trailer()
}

func (s *deferredStream) CloseSend() error {
	if s.stream == nil {
		return nil // nothing was opened, so nothing to half-close
	}
	return s.stream.CloseSend()
}

func (s *deferredStream) Context() context.Context {
	if s.stream == nil {
		return s.ctx
	}
	return s.stream.Context()
}

func validateAny(m any) error {
	if msg, ok := m.(proto.Message); ok {
		return ValidateRequest(msg)
	}
	return nil
}
