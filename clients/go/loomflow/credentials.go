package loomflow

import (
	"context"
	"errors"

	"google.golang.org/grpc/credentials"
)

// TokenSource returns the bearer token to present on one call. It is asked
// before every RPC, so an implementation can refresh tokens before they expire.
type TokenSource func(ctx context.Context) (string, error)

// StaticToken is a [TokenSource] that always returns token.
func StaticToken(token string) TokenSource {
	return func(context.Context) (string, error) { return token, nil }
}

// BearerCredentials sends "authorization: Bearer <token>" on every call. It
// implements [credentials.PerRPCCredentials].
//
// By default it refuses to send a token over a plaintext connection (grpc-go
// fails such calls before they leave the process); [WithInsecure] relaxes
// that for loopback and development setups.
type BearerCredentials struct {
	source        TokenSource
	allowInsecure bool
}

var _ credentials.PerRPCCredentials = (*BearerCredentials)(nil)

// NewBearerCredentials presents the tokens of source. With allowInsecure the
// token may travel over plaintext connections too.
func NewBearerCredentials(source TokenSource, allowInsecure bool) *BearerCredentials {
	return &BearerCredentials{source: source, allowInsecure: allowInsecure}
}

// errEmptyToken is returned instead of sending a header the server would reject.
var errEmptyToken = errors.New("loomflow: token source returned an empty token")

// GetRequestMetadata returns the authorization header for one call.
func (c *BearerCredentials) GetRequestMetadata(ctx context.Context, _ ...string) (map[string]string, error) {
	token, err := c.source(ctx)
	if err != nil {
		return nil, err
	}
	if token == "" {
		return nil, errEmptyToken
	}
	return map[string]string{"authorization": "Bearer " + token}, nil
}

// RequireTransportSecurity reports whether the token may only travel over TLS.
func (c *BearerCredentials) RequireTransportSecurity() bool { return !c.allowInsecure }
