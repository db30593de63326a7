package loomflow

import (
	"crypto/tls"
	"errors"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	loomflowv1 "github.com/loomflow/loomflow/clients/go/gen/loomflow/v1"
)

// Client holds one connection and a stub for each loomflow service on it.
// A single process may host all five services (`loomflow serve`) or each may
// run on its own address; dial one Client per address in the latter case and
// use the stubs the address serves. A Client is safe for concurrent use.
type Client struct {
	conn *grpc.ClientConn

	Memory loomflowv1.MemoryServiceClient
	Budget loomflowv1.BudgetServiceClient
	Policy loomflowv1.PolicyServiceClient
	Audit  loomflowv1.AuditServiceClient
	Agent  loomflowv1.AgentServiceClient
	// Health is the standard gRPC health service; the service names are the
	// full proto names, e.g. "loomflow.v1.MemoryService", and "" for the server.
	Health healthpb.HealthClient
}

// Option configures [Dial].
type Option func(*dialConfig)

type dialConfig struct {
	transport credentials.TransportCredentials
	plaintext bool
	tokens    TokenSource
	validate  bool
	extra     []grpc.DialOption
	retry     *RetryPolicy
}

// WithToken presents token as "authorization: Bearer <token>" on every call.
func WithToken(token string) Option {
	return func(c *dialConfig) { c.tokens = StaticToken(token) }
}

// WithTokenSource asks source for the bearer token before every call, so
// long-lived clients can rotate tokens.
func WithTokenSource(source TokenSource) Option {
	return func(c *dialConfig) { c.tokens = source }
}

// WithTLS connects over TLS with config (nil means the system's roots).
// TLS is also the default when neither WithTLS nor [WithInsecure] is given.
func WithTLS(config *tls.Config) Option {
	return func(c *dialConfig) {
		if config == nil {
			config = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		c.transport = credentials.NewTLS(config)
		c.plaintext = false
	}
}

// WithInsecure connects over plaintext and lets the bearer token travel in
// clear: for loopback addresses and local development only (`loomflow serve`
// listens in plaintext; production puts TLS or mTLS in front of it).
func WithInsecure() Option {
	return func(c *dialConfig) {
		c.transport = insecure.NewCredentials()
		c.plaintext = true
	}
}

// WithValidation checks every request against its .proto rules before it is
// sent (see [ValidateRequest]): an invalid request fails locally with the
// same INVALID_ARGUMENT and field violations the server would answer.
func WithValidation() Option {
	return func(c *dialConfig) { c.validate = true }
}

// WithDialOptions passes further options to [grpc.NewClient] (interceptors,
// keepalive, a service config with retries, ...). They are applied last.
func WithDialOptions(options ...grpc.DialOption) Option {
	return func(c *dialConfig) { c.extra = append(c.extra, options...) }
}

// WithRetry replaces the retry policy (default [DefaultRetryPolicy]); nil turns retries off.
func WithRetry(policy *RetryPolicy) Option {
	return func(c *dialConfig) { c.retry = policy }
}

// Dial creates a client for target (for example "127.0.0.1:50051" or
// "dns:///loomflow.example.com:443"). Like [grpc.NewClient] it does not
// connect until the first call, so a down server shows up as UNAVAILABLE on
// that call rather than as an error here.
func Dial(target string, options ...Option) (*Client, error) {
	if target == "" {
		return nil, errors.New("loomflow: empty target address")
	}
	config := dialConfig{retry: &DefaultRetryPolicy}
	WithTLS(nil)(&config)
	for _, option := range options {
		option(&config)
	}
	dialOptions := []grpc.DialOption{grpc.WithTransportCredentials(config.transport)}
	if config.retry != nil {
		dialOptions = append(dialOptions, grpc.WithDefaultServiceConfig(config.retry.ServiceConfig()))
	}
	if config.tokens != nil {
		dialOptions = append(dialOptions,
			grpc.WithPerRPCCredentials(NewBearerCredentials(config.tokens, config.plaintext)))
	}
	if config.validate {
		dialOptions = append(dialOptions,
			grpc.WithChainUnaryInterceptor(UnaryValidationInterceptor()),
			grpc.WithChainStreamInterceptor(StreamValidationInterceptor()))
	}
	dialOptions = append(dialOptions, config.extra...)
	conn, err := grpc.NewClient(target, dialOptions...)
	if err != nil {
		return nil, fmt.Errorf("loomflow: dial %s: %w", target, err)
	}
	return NewClient(conn), nil
}

// NewClient wraps a connection the caller built and owns.
func NewClient(conn *grpc.ClientConn) *Client {
	return &Client{
		conn:   conn,
		Memory: loomflowv1.NewMemoryServiceClient(conn),
		Budget: loomflowv1.NewBudgetServiceClient(conn),
		Policy: loomflowv1.NewPolicyServiceClient(conn),
		Audit:  loomflowv1.NewAuditServiceClient(conn),
		Agent:  loomflowv1.NewAgentServiceClient(conn),
		Health: healthpb.NewHealthClient(conn),
	}
}

// Conn returns the underlying connection, for stubs this package does not wrap.
func (c *Client) Conn() *grpc.ClientConn { return c.conn }

// Close closes the connection; in-flight calls fail with CANCELED.
func (c *Client) Close() error { return c.conn.Close() }
