package livetest

import (
	"context"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/structpb"

	loomflowv1 "github.com/loomflow/loomflow/clients/go/gen/loomflow/v1"
	"github.com/loomflow/loomflow/clients/go/loomflow"
)

const audit = "AuditService"

func appendEntry(t *testing.T, client *loomflow.Client, scope *loomflowv1.UserScope, action string) *loomflowv1.AppendResponse {
	t.Helper()
	payload, err := structpb.NewStruct(map[string]any{"tool": "search", "query": "weather in Lyon"})
	if err != nil {
		t.Fatal(err)
	}
	appended, err := client.Audit.Append(callContext(t), &loomflowv1.AppendRequest{
		Scope: scope, SessionId: "conv-1", RunId: "run-1", Actor: "agent", Action: action, Payload: payload,
	})
	must(t, audit, err)
	return appended
}

func TestAuditChainAppendsQueriesVerifiesAndExports(t *testing.T) {
	client, ctx := asService(t), callContext(t)
	alice := loomflow.MustUserScope(tenant(t, "alice"))

	first := appendEntry(t, client, alice, "tool_call")
	second := appendEntry(t, client, alice, "model_call")
	if first.GetSeq() != 1 || second.GetSeq() != 2 || len(second.GetMac()) == 0 {
		t.Fatalf("Append seqs %d, %d (mac %x); want 1, 2 and a mac", first.GetSeq(), second.GetSeq(), second.GetMac())
	}

	queried, err := client.Audit.Query(ctx, &loomflowv1.QueryRequest{Scope: alice})
	must(t, audit, err)
	entries := queried.GetEntries()
	if len(entries) != 2 || entries[1].GetPayload().GetFields()["query"].GetStringValue() != "weather in Lyon" {
		t.Fatalf("Query = %v, want both entries with their payloads", entries)
	}
	if string(entries[1].GetPrevMac()) != string(entries[0].GetMac()) {
		t.Fatal("entry 2's prev_mac is not entry 1's mac: the chain is broken")
	}

	verified, err := client.Audit.Verify(ctx, &loomflowv1.VerifyRequest{Scope: alice})
	must(t, audit, err)
	if !verified.GetOk() || len(verified.GetChains()) != 1 || verified.GetChains()[0].GetEntriesChecked() != 2 {
		t.Fatalf("Verify = %v, want one intact chain of 2 entries", verified)
	}

	checkpoint, err := client.Audit.GetCheckpoint(ctx, &loomflowv1.GetCheckpointRequest{Scope: alice, Create: true})
	must(t, audit, err)
	if len(checkpoint.GetCheckpoint().GetSignature()) != 64 || len(checkpoint.GetCheckpoint().GetPublicKey()) != 32 {
		t.Fatalf("checkpoint %v, want an Ed25519 signature and key", checkpoint.GetCheckpoint())
	}

	stream, err := client.Audit.Export(ctx, &loomflowv1.AuditServiceExportRequest{Scope: alice})
	if exported := drain(t, audit, stream, err); len(exported) != 2 {
		t.Fatalf("Export streamed %d entries, want 2", len(exported))
	}
}

func TestAuditRefusesABadScopeNamingTheField(t *testing.T) {
	client := asService(t)
	expectBadScopeRefused(t, audit, func(ctx context.Context, scope *loomflowv1.UserScope) error {
		_, err := client.Audit.Append(ctx, &loomflowv1.AppendRequest{Scope: scope, Actor: "agent", Action: "tool_call"})
		return err
	})
}

// Audit has no by-id read; a tenant's reads simply never contain another
// tenant's entries, and cross-tenant reads need an operator.
func TestAuditNeverReturnsAnotherTenantsEntries(t *testing.T) {
	service, operator, ctx := asService(t), asOperator(t), callContext(t)
	alice := loomflow.MustUserScope(tenant(t, "alice"))
	bob := loomflow.MustUserScope(tenant(t, "bob"))
	appendEntry(t, service, alice, "tool_call")

	queried, err := service.Audit.Query(ctx, &loomflowv1.QueryRequest{Scope: bob})
	must(t, audit, err)
	if len(queried.GetEntries()) != 0 {
		t.Fatalf("bob's query returned %v", queried.GetEntries())
	}
	stream, err := service.Audit.Export(ctx, &loomflowv1.AuditServiceExportRequest{Scope: bob})
	if exported := drain(t, audit, stream, err); len(exported) != 0 {
		t.Fatalf("bob's export streamed %v", exported)
	}

	_, err = service.Audit.Query(ctx, &loomflowv1.QueryRequest{Scope: bob, AllTenants: true})
	expectCode(t, audit, err, codes.PermissionDenied, "an all-tenants query with a service token")
	all, err := operator.Audit.Query(ctx, &loomflowv1.QueryRequest{Scope: bob, AllTenants: true, Limit: 10000})
	must(t, audit, err)
	found := false
	for _, entry := range all.GetEntries() {
		found = found || entry.GetScope().GetUserId() == alice.GetUserId()
	}
	if !found {
		t.Fatal("the operator's all-tenants query lacks alice's entry")
	}
}
