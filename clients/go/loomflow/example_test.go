package loomflow_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	loomflowv1 "github.com/loomflow/loomflow/clients/go/gen/loomflow/v1"
	"github.com/loomflow/loomflow/clients/go/loomflow"
)

// Remember an episode for a user and recall it. Memory accepts service and
// operator tokens; `loomflow serve` listens in plaintext on loopback.
func ExampleDial() {
	client, err := loomflow.Dial("127.0.0.1:50051",
		loomflow.WithInsecure(),
		loomflow.WithToken(os.Getenv("LOOMFLOW_TOKEN")),
		loomflow.WithValidation(),
	)
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	alice, err := loomflow.UserScope("alice")
	if err != nil {
		log.Fatal(err)
	}
	if _, err := client.Memory.Remember(ctx, &loomflowv1.RememberRequest{
		Scope: alice, SessionId: "conv-42", Input: "my favourite colour is teal", Output: "noted",
	}); err != nil {
		log.Fatal(err)
	}
	recalled, err := client.Memory.Recall(ctx, &loomflowv1.RecallRequest{Scope: alice, Query: "favourite colour"})
	if err != nil {
		log.Fatal(err)
	}
	for _, hit := range recalled.GetHits() {
		fmt.Println(hit.GetEpisode().GetInput())
	}
}

// End users call the Agent with their own token: its subject must equal the
// scope's user id.
func ExampleClient_agent() {
	client, err := loomflow.Dial("127.0.0.1:50051",
		loomflow.WithInsecure(), loomflow.WithToken(os.Getenv("ALICE_TOKEN")))
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	reply, err := client.Agent.Run(context.Background(), &loomflowv1.RunRequest{
		Scope:   loomflow.MustUserScope("alice"),
		Options: &loomflowv1.RunOptions{Prompt: "What did I tell you about colours?", SessionId: "conv-42"},
	})
	switch {
	case loomflow.IsResourceExhausted(err):
		limit, _ := loomflow.ExceededLimit(err)
		fmt.Println("out of budget:", limit)
	case err != nil:
		log.Fatal(err)
	default:
		fmt.Println(reply.GetOutput())
	}
}

func ExampleUserScope() {
	scope, err := loomflow.UserScope("alice")
	fmt.Println(scope.GetUserId(), err)

	_, err = loomflow.UserScope("__JEEVES_ANON_USER__")
	fmt.Println(errors.Is(err, loomflow.ErrInvalidUserID))
	// Output:
	// alice <nil>
	// true
}

func ExampleAnonymousScope() {
	scope := loomflow.AnonymousScope()
	fmt.Println(scope.GetAnonymous() != nil, scope.GetUserId() == "")
	// Output: true true
}

func ExampleFieldViolations() {
	// A request with the sentinel as user id, checked locally; the server
	// answers the same status.
	err := loomflow.ValidateRequest(&loomflowv1.GetStatusRequest{
		Scope: &loomflowv1.UserScope{Kind: &loomflowv1.UserScope_UserId{UserId: "__jeeves_anon_user__"}},
	})
	fmt.Println(loomflow.IsInvalidArgument(err))
	for _, v := range loomflow.FieldViolations(err) {
		fmt.Printf("%s (%s)\n", v.GetField(), v.GetReason())
	}
	// Output:
	// true
	// scope.user_id (user_id.not_reserved)
}

func ExampleExceededLimit() {
	st, _ := status.New(codes.ResourceExhausted, "budget exceeded").WithDetails(&errdetails.ErrorInfo{
		Reason: "LIMIT_EXCEEDED", Domain: "loomflow", Metadata: map[string]string{"limit": "user total_tokens daily"},
	})
	limit, ok := loomflow.ExceededLimit(st.Err())
	fmt.Println(limit, ok)
	// Output: user total_tokens daily true
}
