package livetest

import (
	"context"
	"testing"

	"google.golang.org/grpc/codes"

	loomflowv1 "github.com/loomflow/loomflow/clients/go/gen/loomflow/v1"
	"github.com/loomflow/loomflow/clients/go/loomflow"
)

const budget = "BudgetService"

func TestBudgetReserveCommitIsChargedOnceAndReported(t *testing.T) {
	client, ctx := asService(t), callContext(t)
	alice := loomflow.MustUserScope(tenant(t, "alice"))

	reserve := &loomflowv1.ReserveRequest{
		Scope: alice, CallId: "call-1", Model: "echo",
		Estimate: &loomflowv1.Usage{InputTokens: 100, OutputTokens: 50},
	}
	reserved, err := client.Budget.Reserve(ctx, reserve)
	must(t, budget, err)
	if reserved.GetReservationId() == "" || reserved.GetReplayed() {
		t.Fatalf("Reserve = %v, want a fresh reservation", reserved)
	}
	again, err := client.Budget.Reserve(ctx, reserve)
	must(t, budget, err)
	if again.GetReservationId() != reserved.GetReservationId() || !again.GetReplayed() {
		t.Fatalf("Reserve retried with the same call_id = %v, want a replay of %s", again, reserved.GetReservationId())
	}

	commit := &loomflowv1.CommitRequest{
		Scope: alice, ReservationId: reserved.GetReservationId(),
		Actual: &loomflowv1.Usage{InputTokens: 80, OutputTokens: 20},
	}
	committed, err := client.Budget.Commit(ctx, commit)
	must(t, budget, err)
	if committed.GetCharged().GetTotalTokens() != 100 {
		t.Fatalf("Commit charged %v, want 100 total tokens", committed.GetCharged())
	}
	replayed, err := client.Budget.Commit(ctx, commit)
	must(t, budget, err)
	if !replayed.GetReplayed() || replayed.GetCharged().GetTotalTokens() != 100 {
		t.Fatalf("Commit retried = %v, want the original charge replayed", replayed)
	}

	status, err := client.Budget.GetStatus(ctx, &loomflowv1.GetStatusRequest{Scope: alice})
	must(t, budget, err)
	if got := status.GetTotal().GetTotalTokens(); got != 100 {
		t.Fatalf("GetStatus total %d tokens, want 100 (charged exactly once)", got)
	}
}

func TestBudgetRefusesABadScopeNamingTheField(t *testing.T) {
	client := asService(t)
	expectBadScopeRefused(t, budget, func(ctx context.Context, scope *loomflowv1.UserScope) error {
		_, err := client.Budget.GetStatus(ctx, &loomflowv1.GetStatusRequest{Scope: scope})
		return err
	})
}

func TestBudgetCommitOfAnotherTenantsReservationIsNotFound(t *testing.T) {
	client, ctx := asService(t), callContext(t)
	alice := loomflow.MustUserScope(tenant(t, "alice"))
	bob := loomflow.MustUserScope(tenant(t, "bob"))

	reserved, err := client.Budget.Reserve(ctx, &loomflowv1.ReserveRequest{
		Scope: alice, CallId: "call-1", Estimate: &loomflowv1.Usage{InputTokens: 10},
	})
	must(t, budget, err)
	actual := &loomflowv1.Usage{InputTokens: 10}
	_, err = client.Budget.Commit(ctx, &loomflowv1.CommitRequest{
		Scope: bob, ReservationId: reserved.GetReservationId(), Actual: actual,
	})
	expectCode(t, budget, err, codes.NotFound, "bob committing alice's reservation")
	_, err = client.Budget.Release(ctx, &loomflowv1.ReleaseRequest{Scope: bob, ReservationId: reserved.GetReservationId()})
	expectCode(t, budget, err, codes.NotFound, "bob releasing alice's reservation")

	// Bob's attempts neither settled nor released it: alice still can, once.
	committed, err := client.Budget.Commit(ctx, &loomflowv1.CommitRequest{
		Scope: alice, ReservationId: reserved.GetReservationId(), Actual: actual,
	})
	must(t, budget, err)
	if committed.GetReplayed() {
		t.Fatal("alice's first commit was reported as a replay: bob's commit must have landed")
	}
}

func TestBudgetOverTheLimitIsResourceExhaustedNamingTheLimit(t *testing.T) {
	service, operator, ctx := asService(t), asOperator(t), callContext(t)
	alice := loomflow.MustUserScope(tenant(t, "alice"))
	limits := &loomflowv1.SetLimitsRequest{
		Scope: alice, Target: loomflowv1.LimitTarget_LIMIT_TARGET_USER,
		Limits: []*loomflowv1.Limit{{
			Dimension: loomflowv1.Dimension_DIMENSION_TOTAL_TOKENS, Window: loomflowv1.Window_WINDOW_NONE, Max: 100,
		}},
	}
	_, err := service.Budget.SetLimits(ctx, limits)
	expectCode(t, budget, err, codes.PermissionDenied, "SetLimits with a service token")
	_, err = operator.Budget.SetLimits(ctx, limits)
	must(t, budget, err)

	_, err = service.Budget.Reserve(ctx, &loomflowv1.ReserveRequest{
		Scope: alice, CallId: "too-big", Estimate: &loomflowv1.Usage{InputTokens: 150},
	})
	expectCode(t, budget, err, codes.ResourceExhausted, "a reservation over the user's limit")
	if limit, ok := loomflow.ExceededLimit(err); !ok || limit == "" {
		t.Fatalf("RESOURCE_EXHAUSTED without the limit named in ErrorInfo: %v", err)
	}
	_, err = service.Budget.Reserve(ctx, &loomflowv1.ReserveRequest{
		Scope: alice, CallId: "fits", Estimate: &loomflowv1.Usage{InputTokens: 100},
	})
	must(t, budget, err)
}
