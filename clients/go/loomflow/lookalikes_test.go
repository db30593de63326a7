package loomflow

import (
	"encoding/json"
	"errors"
	"os"
	"testing"

	loomflowv1 "github.com/loomflow/loomflow/clients/go/gen/loomflow/v1"
)

// lookalikeCase is one row of testdata/sentinel_lookalikes.json, the table the
// server's tests (tests/reliability/test_sentinel_lookalikes.py) run too.
type lookalikeCase struct {
	Name            string `json:"name"`
	UserID          string `json:"user_id"`
	ReadsAsSentinel bool   `json:"reads_as_sentinel"`
}

func loadLookalikeCases(t *testing.T) []lookalikeCase {
	t.Helper()
	raw, err := os.ReadFile("testdata/sentinel_lookalikes.json")
	if err != nil {
		t.Fatal(err)
	}
	var table struct {
		Cases []lookalikeCase `json:"cases"`
	}
	if err := json.Unmarshal(raw, &table); err != nil {
		t.Fatal(err)
	}
	if len(table.Cases) == 0 {
		t.Fatal("the shared look-alike table is empty")
	}
	return table.Cases
}

func TestLookalikeTableAgreesWithTheServer(t *testing.T) {
	for _, c := range loadLookalikeCases(t) {
		t.Run(c.Name, func(t *testing.T) {
			if got := ReadsAsSentinel(c.UserID); got != c.ReadsAsSentinel {
				t.Fatalf("ReadsAsSentinel(%+q) = %v, the server says %v", c.UserID, got, c.ReadsAsSentinel)
			}
			_, err := UserScope(c.UserID)
			if c.ReadsAsSentinel && !errors.Is(err, ErrInvalidUserID) {
				t.Fatalf("UserScope(%+q) accepted a look-alike of the sentinel", c.UserID)
			}
			request := &loomflowv1.GetStatusRequest{Scope: &loomflowv1.UserScope{Kind: &loomflowv1.UserScope_UserId{UserId: c.UserID}}}
			err = ValidateRequest(request)
			if c.ReadsAsSentinel {
				if !IsInvalidArgument(err) {
					t.Fatalf("ValidateRequest let %+q through: %v", c.UserID, err)
				}
				found := false
				for _, v := range FieldViolations(err) {
					found = found || (v.GetField() == "scope.user_id" && v.GetReason() == sentinelRuleID)
				}
				if !found {
					t.Fatalf("ValidateRequest(%+q) did not name scope.user_id / %s: %v", c.UserID, sentinelRuleID, err)
				}
			}
		})
	}
}
