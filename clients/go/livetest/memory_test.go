package livetest

import (
	"context"
	"testing"

	"google.golang.org/grpc/codes"

	loomflowv1 "github.com/loomflow/loomflow/clients/go/gen/loomflow/v1"
	"github.com/loomflow/loomflow/clients/go/loomflow"
)

const memory = "MemoryService"

func TestMemoryRemembersRecallsAndExportsOneTenantsEpisodes(t *testing.T) {
	client, ctx := asService(t), callContext(t)
	alice := loomflow.MustUserScope(tenant(t, "alice"))

	remembered, err := client.Memory.Remember(ctx, &loomflowv1.RememberRequest{
		Scope: alice, SessionId: "conv-1", Input: "my favourite colour is teal", Output: "noted: teal",
		Metadata: map[string]string{"channel": "go-test"},
	})
	must(t, memory, err)
	episode := remembered.GetEpisode()
	if episode.GetId() == "" || episode.GetScope().GetUserId() != alice.GetUserId() {
		t.Fatalf("Remember returned %v, want an id and alice's scope", episode)
	}

	recalled, err := client.Memory.Recall(ctx, &loomflowv1.RecallRequest{Scope: alice, Query: "favourite colour"})
	must(t, memory, err)
	if len(recalled.GetHits()) == 0 || recalled.GetHits()[0].GetEpisode().GetId() != episode.GetId() {
		t.Fatalf("Recall hits %v, want the remembered episode first", recalled.GetHits())
	}

	got, err := client.Memory.GetEpisode(ctx, &loomflowv1.GetEpisodeRequest{Scope: alice, EpisodeId: episode.GetId()})
	must(t, memory, err)
	if got.GetEpisode().GetInput() != "my favourite colour is teal" || got.GetEpisode().GetMetadata()["channel"] != "go-test" {
		t.Fatalf("GetEpisode = %v", got.GetEpisode())
	}

	block, err := client.Memory.PutBlock(ctx, &loomflowv1.PutBlockRequest{Scope: alice, Label: "notes", Content: "likes teal"})
	must(t, memory, err)
	if block.GetBlock().GetVersion() != 1 {
		t.Fatalf("first PutBlock version %d, want 1", block.GetBlock().GetVersion())
	}
	stale := int64(0)
	_, err = client.Memory.PutBlock(ctx, &loomflowv1.PutBlockRequest{
		Scope: alice, Label: "notes", Content: "lost update", ExpectedVersion: &stale,
	})
	if !loomflow.IsAborted(err) {
		t.Fatalf("PutBlock with a stale expected_version: %v, want ABORTED", err)
	}

	fact, err := client.Memory.AssertFact(ctx, &loomflowv1.AssertFactRequest{
		Scope: alice, Subject: "alice", Predicate: "favourite_colour", Object: "teal",
	})
	must(t, memory, err)
	facts, err := client.Memory.QueryFacts(ctx, &loomflowv1.QueryFactsRequest{Scope: alice, Subject: "alice"})
	must(t, memory, err)
	if len(facts.GetFacts()) != 1 || facts.GetFacts()[0].GetId() != fact.GetFact().GetId() {
		t.Fatalf("QueryFacts = %v, want the asserted fact", facts.GetFacts())
	}

	stream, err := client.Memory.Export(ctx, &loomflowv1.MemoryServiceExportRequest{Scope: alice})
	exported := drain(t, memory, stream, err)
	var episodes, blocks, factsOut int
	for _, record := range exported {
		switch {
		case record.GetEpisode() != nil:
			episodes++
		case record.GetBlock() != nil:
			blocks++
		case record.GetFact() != nil:
			factsOut++
		}
	}
	if episodes != 1 || blocks != 1 || factsOut != 1 {
		t.Fatalf("Export gave %d episodes, %d blocks, %d facts; want 1 of each", episodes, blocks, factsOut)
	}
}

func TestMemoryRefusesABadScopeNamingTheField(t *testing.T) {
	client := asService(t)
	expectBadScopeRefused(t, memory, func(ctx context.Context, scope *loomflowv1.UserScope) error {
		_, err := client.Memory.Remember(ctx, &loomflowv1.RememberRequest{Scope: scope, Input: "x"})
		return err
	})
}

func TestMemoryAnswersNotFoundForAnotherTenantsRecords(t *testing.T) {
	client, ctx := asService(t), callContext(t)
	alice := loomflow.MustUserScope(tenant(t, "alice"))
	bob := loomflow.MustUserScope(tenant(t, "bob"))

	remembered, err := client.Memory.Remember(ctx, &loomflowv1.RememberRequest{
		Scope: alice, Input: "the vault code is 4711", Output: "stored",
	})
	must(t, memory, err)
	id := remembered.GetEpisode().GetId()
	_, err = client.Memory.GetEpisode(ctx, &loomflowv1.GetEpisodeRequest{Scope: bob, EpisodeId: id})
	expectCode(t, memory, err, codes.NotFound, "bob reading alice's episode")

	fact, err := client.Memory.AssertFact(ctx, &loomflowv1.AssertFactRequest{
		Scope: alice, Subject: "vault", Predicate: "code", Object: "4711",
	})
	must(t, memory, err)
	_, err = client.Memory.RetractFact(ctx, &loomflowv1.RetractFactRequest{Scope: bob, FactId: fact.GetFact().GetId()})
	expectCode(t, memory, err, codes.NotFound, "bob retracting alice's fact")

	_, err = client.Memory.PutBlock(ctx, &loomflowv1.PutBlockRequest{Scope: alice, Label: "secret", Content: "4711"})
	must(t, memory, err)
	_, err = client.Memory.GetBlock(ctx, &loomflowv1.GetBlockRequest{Scope: bob, Label: "secret"})
	expectCode(t, memory, err, codes.NotFound, "bob reading alice's block")

	// Bob's recall of the exact text finds nothing: alice's episode is the best
	// match in the whole store, and still never crosses over.
	recalled, err := client.Memory.Recall(ctx, &loomflowv1.RecallRequest{Scope: bob, Query: "the vault code is 4711"})
	must(t, memory, err)
	if len(recalled.GetHits()) != 0 {
		t.Fatalf("bob recalled %v", recalled.GetHits())
	}
}

func TestMemoryAnonymousPartitionIsItsOwnTenant(t *testing.T) {
	client, ctx := asService(t), callContext(t)
	remembered, err := client.Memory.Remember(ctx, &loomflowv1.RememberRequest{
		Scope: loomflow.AnonymousScope(), Input: "anonymous note", Output: "ok",
	})
	must(t, memory, err)
	if remembered.GetEpisode().GetScope().GetAnonymous() == nil {
		t.Fatalf("anonymous episode carries scope %v, want the anonymous kind", remembered.GetEpisode().GetScope())
	}
	id := remembered.GetEpisode().GetId()
	_, err = client.Memory.GetEpisode(ctx, &loomflowv1.GetEpisodeRequest{Scope: loomflow.AnonymousScope(), EpisodeId: id})
	must(t, memory, err)
	_, err = client.Memory.GetEpisode(ctx, &loomflowv1.GetEpisodeRequest{
		Scope: loomflow.MustUserScope(tenant(t, "carol")), EpisodeId: id,
	})
	expectCode(t, memory, err, codes.NotFound, "a named user reading an anonymous episode")
}
