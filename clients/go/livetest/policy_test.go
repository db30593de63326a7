package livetest

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	loomflowv1 "github.com/loomflow/loomflow/clients/go/gen/loomflow/v1"
	"github.com/loomflow/loomflow/clients/go/loomflow"
)

const policy = "PolicyService"

func TestPolicyChecksAToolCallWithADecisionID(t *testing.T) {
	client, ctx := asService(t), callContext(t)
	checked, err := client.Policy.Check(ctx, &loomflowv1.CheckRequest{
		Scope: loomflow.MustUserScope(tenant(t, "alice")), ToolName: "search", ToolTags: []string{"read_only"},
	})
	must(t, policy, err)
	if checked.GetDecisionId() == "" || checked.GetDecision() == loomflowv1.Decision_DECISION_UNSPECIFIED {
		t.Fatalf("Check = %v, want a decision and its id", checked)
	}
}

func TestPolicyApprovalIsWatchedRequestedAndResolved(t *testing.T) {
	client, ctx := asService(t), callContext(t)
	alice := loomflow.MustUserScope(tenant(t, "alice"))

	watchCtx, stopWatching := context.WithCancel(ctx)
	defer stopWatching()
	watch, err := client.Policy.WatchApprovals(watchCtx, &loomflowv1.WatchApprovalsRequest{
		Scope: alice, IncludeResolved: true,
	})
	must(t, policy, err)
	seen := make(chan *loomflowv1.Approval, 8)
	go func() {
		defer close(seen)
		for {
			event, err := watch.Recv()
			if err != nil {
				return
			}
			seen <- event.GetApproval()
		}
	}()
	// The stream is open once the server has the call; give it a moment to
	// subscribe before the approval is created.
	time.Sleep(200 * time.Millisecond)

	requested, err := client.Policy.RequestApproval(ctx, &loomflowv1.RequestApprovalRequest{
		Scope: alice, ToolName: "delete_file", Reason: "go client test", TimeoutMs: 60_000,
	})
	must(t, policy, err)
	approval := requested.GetApproval()
	if approval.GetApprovalId() == "" || approval.GetStatus() != loomflowv1.ApprovalStatus_APPROVAL_STATUS_PENDING {
		t.Fatalf("RequestApproval = %v, want a pending approval", approval)
	}
	got, err := client.Policy.GetApproval(ctx, &loomflowv1.GetApprovalRequest{Scope: alice, ApprovalId: approval.GetApprovalId()})
	must(t, policy, err)
	if got.GetApproval().GetScope().GetUserId() != alice.GetUserId() {
		t.Fatalf("approval addressed to %v, want alice", got.GetApproval().GetScope())
	}
	resolve := &loomflowv1.ResolveApprovalRequest{
		Scope: alice, ApprovalId: approval.GetApprovalId(), Resolution: loomflowv1.Resolution_RESOLUTION_APPROVE,
	}
	// A service credential (the Agent's) never resolves an approval: an operator does.
	_, err = client.Policy.ResolveApproval(ctx, resolve)
	expectCode(t, policy, err, codes.PermissionDenied, "a service token resolving an approval")
	resolved, err := asOperator(t).Policy.ResolveApproval(ctx, resolve)
	must(t, policy, err)
	if resolved.GetApproval().GetStatus() != loomflowv1.ApprovalStatus_APPROVAL_STATUS_APPROVED {
		t.Fatalf("ResolveApproval = %v, want APPROVED", resolved.GetApproval())
	}

	want := []loomflowv1.ApprovalStatus{
		loomflowv1.ApprovalStatus_APPROVAL_STATUS_PENDING, loomflowv1.ApprovalStatus_APPROVAL_STATUS_APPROVED,
	}
	var statuses []loomflowv1.ApprovalStatus
	timeout := time.After(10 * time.Second)
	for len(statuses) < len(want) {
		select {
		case event, open := <-seen:
			if !open {
				t.Fatalf("watch ended after %v; want %v", statuses, want)
			}
			if event.GetApprovalId() == approval.GetApprovalId() {
				statuses = append(statuses, event.GetStatus())
			}
		case <-timeout:
			t.Fatalf("watch saw %v within 10 s; want %v", statuses, want)
		}
	}
	for i := range want {
		if statuses[i] != want[i] {
			t.Fatalf("watch saw %v; want %v", statuses, want)
		}
	}
}

func TestPolicyRefusesABadScopeNamingTheField(t *testing.T) {
	client := asService(t)
	expectBadScopeRefused(t, policy, func(ctx context.Context, scope *loomflowv1.UserScope) error {
		_, err := client.Policy.Check(ctx, &loomflowv1.CheckRequest{Scope: scope, ToolName: "search"})
		return err
	})
}

func TestPolicyAnotherTenantsApprovalIsNotFound(t *testing.T) {
	client, ctx := asService(t), callContext(t)
	alice := loomflow.MustUserScope(tenant(t, "alice"))
	bob := loomflow.MustUserScope(tenant(t, "bob"))

	requested, err := client.Policy.RequestApproval(ctx, &loomflowv1.RequestApprovalRequest{
		Scope: alice, ToolName: "transfer_money", TimeoutMs: 60_000,
	})
	must(t, policy, err)
	id := requested.GetApproval().GetApprovalId()
	_, err = client.Policy.GetApproval(ctx, &loomflowv1.GetApprovalRequest{Scope: bob, ApprovalId: id})
	expectCode(t, policy, err, codes.NotFound, "bob reading alice's approval")
	_, err = asOperator(t).Policy.ResolveApproval(ctx, &loomflowv1.ResolveApprovalRequest{
		Scope: bob, ApprovalId: id, Resolution: loomflowv1.Resolution_RESOLUTION_APPROVE,
	})
	expectCode(t, policy, err, codes.NotFound, "bob approving alice's approval")

	got, err := client.Policy.GetApproval(ctx, &loomflowv1.GetApprovalRequest{Scope: alice, ApprovalId: id})
	must(t, policy, err)
	if got.GetApproval().GetStatus() != loomflowv1.ApprovalStatus_APPROVAL_STATUS_PENDING {
		t.Fatalf("alice's approval is %v after bob's attempt, want still PENDING", got.GetApproval().GetStatus())
	}
}

func TestPolicyPerUserRulesNeedAnOperatorAndApplyOnlyToThatUser(t *testing.T) {
	service, operator, ctx := asService(t), asOperator(t), callContext(t)
	alice := loomflow.MustUserScope(tenant(t, "alice"))
	bob := loomflow.MustUserScope(tenant(t, "bob"))
	put := &loomflowv1.PutPolicyRequest{Scope: alice, Policy: &loomflowv1.Policy{
		Mode: loomflowv1.Mode_MODE_DEFAULT,
		Rules: []*loomflowv1.Rule{{
			Id: "no-shell", Tool: "shell.*", Decision: loomflowv1.Decision_DECISION_DENY, Reason: "no shell for alice",
		}},
	}}
	_, err := service.Policy.PutPolicy(ctx, put)
	expectCode(t, policy, err, codes.PermissionDenied, "PutPolicy with a service token")
	_, err = operator.Policy.PutPolicy(ctx, put)
	must(t, policy, err)

	check := func(scope *loomflowv1.UserScope) *loomflowv1.CheckResponse {
		checked, err := service.Policy.Check(ctx, &loomflowv1.CheckRequest{Scope: scope, ToolName: "shell.exec"})
		must(t, policy, err)
		return checked
	}
	if got := check(alice); got.GetDecision() != loomflowv1.Decision_DECISION_DENY || got.GetMatchedRule() != "no-shell" {
		t.Fatalf("alice's check = %v, want DENY by rule no-shell", got)
	}
	if got := check(bob); got.GetMatchedRule() == "no-shell" {
		t.Fatalf("bob's check matched alice's rule: %v", got)
	}
}
