package loomflow

import (
	"encoding/json"
	"fmt"
	"time"
)

// RetryPolicy retries idempotent calls that failed with UNAVAILABLE, within the
// call's deadline, with exponential backoff: the policy of the Python client
// (loomflow.client.RetryPolicy), carried out by grpc-go's own retry machinery
// through the service config, so it also covers streams' first message.
type RetryPolicy struct {
	MaxAttempts    int           // calls at most, the first included (grpc-go caps this at 5)
	InitialBackoff time.Duration // the first retry's delay ceiling (delays are jittered)
	MaxBackoff     time.Duration
}

// DefaultRetryPolicy matches the Python client: 4 attempts, 50 ms doubling up to 2 s.
var DefaultRetryPolicy = RetryPolicy{MaxAttempts: 4, InitialBackoff: 50 * time.Millisecond, MaxBackoff: 2 * time.Second}

// IdempotentMethods are the RPCs a retry cannot apply twice (reads, keyed writes,
// and writes deduplicated by an idempotency key), the same list the Python client retries.
var IdempotentMethods = map[string][]string{
	"loomflow.v1.MemoryService": {"Recall", "GetEpisode", "ListEpisodes", "GetBlock", "ListBlocks", "QueryFacts", "GetContext", "RetractFact", "Forget"},
	"loomflow.v1.BudgetService": {"Reserve", "Commit", "Release", "GetStatus", "SetLimits"},
	"loomflow.v1.PolicyService": {"Check", "GetApproval", "GetPolicy", "PutPolicy"},
	"loomflow.v1.AuditService":  {"Query", "Verify", "Forget"},
}

// seconds is a duration as the service config writes it ("0.05s").
func seconds(d time.Duration) string { return fmt.Sprintf("%gs", d.Seconds()) }

// ServiceConfig is the JSON service config that applies the policy (see [WithRetry]).
func (p RetryPolicy) ServiceConfig() string {
	type name struct {
		Service string `json:"service"`
		Method  string `json:"method"`
	}
	var names []name
	for service, methods := range IdempotentMethods {
		for _, method := range methods {
			names = append(names, name{service, method})
		}
	}
	config := map[string]any{
		"methodConfig": []any{map[string]any{
			"name": names,
			"retryPolicy": map[string]any{
				"maxAttempts":          p.MaxAttempts,
				"initialBackoff":       seconds(p.InitialBackoff),
				"maxBackoff":           seconds(p.MaxBackoff),
				"backoffMultiplier":    2,
				"retryableStatusCodes": []string{"UNAVAILABLE"},
			},
		}},
	}
	out, _ := json.Marshal(config)
	return string(out)
}
