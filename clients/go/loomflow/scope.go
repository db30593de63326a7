package loomflow

import (
	"errors"
	"fmt"
	"strings"

	"buf.build/go/protovalidate"

	loomflowv1 "github.com/loomflow/loomflow/clients/go/gen/loomflow/v1"
)

// ErrInvalidUserID is wrapped by every error [UserScope] returns.
var ErrInvalidUserID = errors.New("loomflow: invalid user id")

// UserScope returns the scope of the end user id. It fails (wrapping
// [ErrInvalidUserID]) when the server would reject the id: empty, longer than
// 256 characters, containing control characters, surrounded by white space,
// or reading as the reserved anonymous sentinel (any letter case, or a Unicode
// look-alike: [ReadsAsSentinel]). The rules are the ones declared in
// tenancy.proto, checked with protovalidate, plus the server's look-alike
// table, so the client and the server cannot disagree.
func UserScope(id string) (*loomflowv1.UserScope, error) {
	scope := &loomflowv1.UserScope{Kind: &loomflowv1.UserScope_UserId{UserId: id}}
	if err := protovalidate.Validate(scope); err != nil {
		var invalid *protovalidate.ValidationError
		if !errors.As(err, &invalid) {
			return nil, fmt.Errorf("loomflow: checking user id: %w", err)
		}
		reasons := make([]string, 0, len(invalid.Violations))
		for _, v := range invalid.Violations {
			reasons = append(reasons, v.Proto.GetMessage())
		}
		// %.64q: quote (control characters stay visible) and cap what is echoed back.
		return nil, fmt.Errorf("%w %.64q: %s", ErrInvalidUserID, id, strings.Join(reasons, "; "))
	}
	if ReadsAsSentinel(id) {
		return nil, fmt.Errorf("%w %.64q: %s", ErrInvalidUserID, id, sentinelMessage)
	}
	return scope, nil
}

// MustUserScope is [UserScope] for ids known to be valid (constants, tests);
// it panics on an invalid id.
func MustUserScope(id string) *loomflowv1.UserScope {
	scope, err := UserScope(id)
	if err != nil {
		panic(err)
	}
	return scope
}

// AnonymousScope returns the scope of the anonymous partition: a real tenant
// bucket for callers without a user id, addressed by a typed choice rather
// than by any string.
func AnonymousScope() *loomflowv1.UserScope {
	return &loomflowv1.UserScope{Kind: &loomflowv1.UserScope_Anonymous{Anonymous: &loomflowv1.Anonymous{}}}
}
