package livetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	loomflowv1 "github.com/loomflow/loomflow/clients/go/gen/loomflow/v1"
	"github.com/loomflow/loomflow/clients/go/loomflow"
)

// suiteEnv is what the harness hands over; see the package doc.
type suiteEnv struct {
	address, serviceToken, operatorToken string
	alice, aliceToken, bob, bobToken     string
}

var live suiteEnv

func TestMain(m *testing.M) {
	live = suiteEnv{
		address:       os.Getenv("LOOMFLOW_TEST_ADDRESS"),
		serviceToken:  os.Getenv("LOOMFLOW_TEST_SERVICE_TOKEN"),
		operatorToken: os.Getenv("LOOMFLOW_TEST_OPERATOR_TOKEN"),
		alice:         os.Getenv("LOOMFLOW_TEST_ALICE"),
		aliceToken:    os.Getenv("LOOMFLOW_TEST_ALICE_TOKEN"),
		bob:           os.Getenv("LOOMFLOW_TEST_BOB"),
		bobToken:      os.Getenv("LOOMFLOW_TEST_BOB_TOKEN"),
	}
	os.Exit(m.Run())
}

// requireLive skips a test when no suite was handed over, or fails it when
// the harness said one must be (so CI cannot pass by skipping).
func requireLive(t *testing.T) {
	t.Helper()
	missing := []string{}
	for name, value := range map[string]string{
		"LOOMFLOW_TEST_ADDRESS": live.address, "LOOMFLOW_TEST_SERVICE_TOKEN": live.serviceToken,
		"LOOMFLOW_TEST_OPERATOR_TOKEN": live.operatorToken, "LOOMFLOW_TEST_ALICE": live.alice,
		"LOOMFLOW_TEST_ALICE_TOKEN": live.aliceToken, "LOOMFLOW_TEST_BOB": live.bob,
		"LOOMFLOW_TEST_BOB_TOKEN": live.bobToken,
	} {
		if value == "" {
			missing = append(missing, name)
		}
	}
	if len(missing) == 0 {
		return
	}
	slices.Sort(missing)
	if os.Getenv("LOOMFLOW_TEST_LIVE_REQUIRED") == "1" {
		t.Fatalf("no live suite: %v unset", missing)
	}
	t.Skipf("no live suite (%v unset); run tests/test_go_client.py", missing)
}

// dial connects to the suite presenting token ("" for none).
func dial(t *testing.T, token string) *loomflow.Client {
	t.Helper()
	requireLive(t)
	options := []loomflow.Option{loomflow.WithInsecure()}
	if token != "" {
		options = append(options, loomflow.WithToken(token))
	}
	client, err := loomflow.Dial(live.address, options...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Close() })
	return client
}

// asService is the credential Memory, Budget, Policy and Audit expect from
// the Agent and other internal callers.
func asService(t *testing.T) *loomflow.Client { return dial(t, live.serviceToken) }

func asOperator(t *testing.T) *loomflow.Client { return dial(t, live.operatorToken) }

func callContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// tenant returns a fresh user id, so tests sharing one suite never see each
// other's data.
func tenant(t *testing.T, name string) string {
	t.Helper()
	suffix := make([]byte, 6)
	if _, err := rand.Read(suffix); err != nil {
		t.Fatal(err)
	}
	return name + "-" + hex.EncodeToString(suffix)
}

// skipIfPending skips the test when the service has not been implemented yet.
func skipIfPending(t *testing.T, service string, err error) {
	t.Helper()
	if loomflow.Code(err) == codes.Unimplemented {
		t.Skipf("PENDING: %s answers UNIMPLEMENTED: %v", service, err)
	}
}

// must fails the test on err, skipping it first if the service is pending.
func must(t *testing.T, service string, err error) {
	t.Helper()
	skipIfPending(t, service, err)
	if err != nil {
		t.Fatalf("%s: %v", service, err)
	}
}

// expectCode fails unless err has the wanted status code.
func expectCode(t *testing.T, service string, err error, want codes.Code, what string) {
	t.Helper()
	skipIfPending(t, service, err)
	if got := loomflow.Code(err); got != want {
		t.Fatalf("%s: %s: got %v (%v), want %v", service, what, got, err, want)
	}
}

func rawUserID(id string) *loomflowv1.UserScope {
	return &loomflowv1.UserScope{Kind: &loomflowv1.UserScope_UserId{UserId: id}}
}

// badScope is a scope the contract refuses and the field the refusal names.
type badScope struct {
	scope *loomflowv1.UserScope
	field string
}

// badScopes are built by hand: loomflow.UserScope refuses every one of them.
var badScopes = map[string]badScope{
	"missing":             {nil, "scope"},
	"neither kind":        {&loomflowv1.UserScope{}, "scope.kind"},
	"empty user id":       {rawUserID(""), "scope.user_id"},
	"sentinel":            {rawUserID("__jeeves_anon_user__"), "scope.user_id"},
	"sentinel upper case": {rawUserID("__JEEVES_ANON_USER__"), "scope.user_id"},
	"control character":   {rawUserID("ali\x00ce"), "scope.user_id"},
	"leading space":       {rawUserID(" alice"), "scope.user_id"},
}

// expectBadScopeRefused calls rpc with every bad scope and checks the server
// answers INVALID_ARGUMENT with a BadRequest violation on the right field.
func expectBadScopeRefused(t *testing.T, service string, rpc func(context.Context, *loomflowv1.UserScope) error) {
	t.Helper()
	for name, bad := range badScopes {
		t.Run(name, func(t *testing.T) {
			err := rpc(callContext(t), bad.scope)
			expectCode(t, service, err, codes.InvalidArgument, "bad scope "+name)
			if fields := loomflow.ViolatedFields(err); !slices.Contains(fields, bad.field) {
				t.Fatalf("%s: violated fields %v, want %q among them", service, fields, bad.field)
			}
		})
	}
}

// drain reads a server stream to its end.
func drain[T any](t *testing.T, service string, stream grpc.ServerStreamingClient[T], err error) []*T {
	t.Helper()
	must(t, service, err)
	var items []*T
	for {
		item, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return items
		}
		must(t, service, err)
		items = append(items, item)
	}
}
