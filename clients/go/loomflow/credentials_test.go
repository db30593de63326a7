package loomflow_test

import (
	"context"
	"errors"
	"testing"

	"github.com/loomflow/loomflow/clients/go/loomflow"
)

func TestBearerCredentialsSendTheAuthorizationHeader(t *testing.T) {
	creds := loomflow.NewBearerCredentials(loomflow.StaticToken("abc.def.ghi"), false)
	md, err := creds.GetRequestMetadata(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if md["authorization"] != "Bearer abc.def.ghi" {
		t.Fatalf("metadata %v", md)
	}
	if !creds.RequireTransportSecurity() {
		t.Fatal("credentials allow plaintext without being asked to")
	}
	if loomflow.NewBearerCredentials(loomflow.StaticToken("t"), true).RequireTransportSecurity() {
		t.Fatal("allowInsecure credentials still require TLS")
	}
}

func TestBearerCredentialsAskTheSourceOnEveryCall(t *testing.T) {
	calls := 0
	source := func(context.Context) (string, error) { calls++; return "token", nil }
	creds := loomflow.NewBearerCredentials(source, false)
	for range 3 {
		if _, err := creds.GetRequestMetadata(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if calls != 3 {
		t.Fatalf("source asked %d times for 3 calls", calls)
	}
}

func TestBearerCredentialsFailTheCallOnAnEmptyOrFailedToken(t *testing.T) {
	if _, err := loomflow.NewBearerCredentials(loomflow.StaticToken(""), false).GetRequestMetadata(context.Background()); err == nil {
		t.Fatal("an empty token was sent")
	}
	boom := errors.New("token service down")
	failing := func(context.Context) (string, error) { return "", boom }
	if _, err := loomflow.NewBearerCredentials(failing, false).GetRequestMetadata(context.Background()); !errors.Is(err, boom) {
		t.Fatalf("error %v does not carry the source's failure", err)
	}
}
