package livetest

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"

	loomflowv1 "github.com/loomflow/loomflow/clients/go/gen/loomflow/v1"
	"github.com/loomflow/loomflow/clients/go/loomflow"
)

const agent = "AgentService"

func run(ctx context.Context, client *loomflow.Client, scope *loomflowv1.UserScope, prompt string) (*loomflowv1.RunResponse, error) {
	return client.Agent.Run(ctx, &loomflowv1.RunRequest{
		Scope: scope, Options: &loomflowv1.RunOptions{Prompt: prompt, SessionId: "go-live"},
	})
}

func TestAgentRunsForTheUserItsTokenNames(t *testing.T) {
	client, ctx := dial(t, live.aliceToken), callContext(t)
	reply, err := run(ctx, client, loomflow.MustUserScope(live.alice), "hello from the Go client")
	must(t, agent, err)
	if reply.GetRunId() == "" || reply.GetOutput() == "" || reply.GetTurns() < 1 {
		t.Fatalf("Run = %v, want a run id, an output and at least one turn", reply)
	}

	stream, err := client.Agent.RunStream(ctx, &loomflowv1.RunStreamRequest{
		Scope: loomflow.MustUserScope(live.alice), Options: &loomflowv1.RunOptions{Prompt: "stream this"},
	})
	events := drain(t, agent, stream, err)
	if len(events) == 0 || events[len(events)-1].GetResult() == nil {
		t.Fatalf("RunStream gave %d events, want the last to be the result", len(events))
	}
}

func TestAgentRefusesABadScopeNamingTheField(t *testing.T) {
	client := dial(t, live.aliceToken)
	expectBadScopeRefused(t, agent, func(ctx context.Context, scope *loomflowv1.UserScope) error {
		_, err := run(ctx, client, scope, "hi")
		return err
	})
}

func TestAgentBindsTheScopeToTheAuthenticatedUser(t *testing.T) {
	ctx := callContext(t)
	alice := dial(t, live.aliceToken)
	_, err := run(ctx, alice, loomflow.MustUserScope(live.bob), "let me read bob's memory")
	expectCode(t, agent, err, codes.PermissionDenied, "alice's token with bob's scope")
	_, err = run(ctx, alice, loomflow.AnonymousScope(), "as anonymous")
	expectCode(t, agent, err, codes.PermissionDenied, "alice's token with the anonymous scope")
	_, err = run(ctx, dial(t, ""), loomflow.MustUserScope(live.alice), "no token")
	expectCode(t, agent, err, codes.Unauthenticated, "a call without a token")
	_, err = run(ctx, dial(t, "not-a-jwt"), loomflow.MustUserScope(live.alice), "bad token")
	expectCode(t, agent, err, codes.Unauthenticated, "a call with a malformed token")

	// End-user tokens reach only the Agent, never the services behind it.
	_, err = alice.Memory.Recall(ctx, &loomflowv1.RecallRequest{Scope: loomflow.MustUserScope(live.alice), Query: "x"})
	expectCode(t, memory, err, codes.PermissionDenied, "an end-user token calling Memory directly")
}

// The episode a run remembers belongs to its user: another tenant's look-up of
// it is NOT_FOUND.
func TestAgentRunsEpisodeIsNotFoundForAnotherTenant(t *testing.T) {
	ctx := callContext(t)
	reply, err := run(ctx, dial(t, live.aliceToken), loomflow.MustUserScope(live.alice), "remember that I like teal")
	must(t, agent, err)

	service := asService(t)
	stream, err := service.Memory.Export(ctx, &loomflowv1.MemoryServiceExportRequest{Scope: loomflow.MustUserScope(live.alice)})
	var episode *loomflowv1.Episode
	for _, record := range drain(t, memory, stream, err) {
		if record.GetEpisode().GetRunId() == reply.GetRunId() {
			episode = record.GetEpisode()
		}
	}
	if episode == nil {
		t.Fatalf("no episode of run %s in alice's memory", reply.GetRunId())
	}
	_, err = service.Memory.GetEpisode(ctx, &loomflowv1.GetEpisodeRequest{
		Scope: loomflow.MustUserScope(live.bob), EpisodeId: episode.GetId(),
	})
	expectCode(t, memory, err, codes.NotFound, "bob reading the episode of alice's run")

	bobsRun, err := run(ctx, dial(t, live.bobToken), loomflow.MustUserScope(live.bob), "remember that I like teal")
	must(t, agent, err)
	for _, id := range bobsRun.GetRecalledEpisodeIds() {
		if id == episode.GetId() {
			t.Fatal("bob's run recalled alice's episode")
		}
	}
}

func TestAgentRunsCallerToolsInTheClientAndContinuesTheRun(t *testing.T) {
	client, ctx := dial(t, live.aliceToken), callContext(t)
	var seen loomflow.RunContext
	lookup := loomflow.CallerTool{
		Name:        "lookup_order",
		Description: "Looks an order up by its id.",
		Parameters: map[string]any{
			"type": "object", "properties": map[string]any{"order_id": map[string]any{"type": "string"}},
		},
		Handler: func(_ context.Context, run loomflow.RunContext, arguments map[string]any) (string, error) {
			seen = run
			return "order " + arguments["order_id"].(string) + " shipped", nil
		},
	}
	reply, err := client.RunWithTools(ctx, &loomflowv1.RunRequest{
		Scope:   loomflow.MustUserScope(live.alice),
		Options: &loomflowv1.RunOptions{Prompt: "/call lookup_order {\"order_id\": \"42\"}", SessionId: "go-tools"},
	}, lookup)
	must(t, agent, err)
	if reply.GetStatus() != loomflowv1.RunStatus_RUN_STATUS_COMPLETED {
		t.Fatalf("status = %v, want completed", reply.GetStatus())
	}
	if want := "[lookup_order] order 42 shipped"; !strings.Contains(reply.GetOutput(), want) {
		t.Fatalf("output = %q, want it to contain %q", reply.GetOutput(), want)
	}
	if seen.UserID != live.alice || seen.SessionID != "go-tools" || seen.RunID != reply.GetRunId() {
		t.Fatalf("the handler saw %+v, want alice's run %s in go-tools", seen, reply.GetRunId())
	}
}
