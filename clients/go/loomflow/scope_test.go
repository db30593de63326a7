package loomflow_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/loomflow/loomflow/clients/go/loomflow"
)

func TestUserScopeRefusesIDsTheServerWouldReject(t *testing.T) {
	cases := map[string]string{
		"empty":                  "",
		"sentinel":               "__jeeves_anon_user__",
		"sentinel in upper case": "__JEEVES_ANON_USER__",
		"control character":      "ali\x00ce",
		"newline":                "alice\nbob",
		"DEL":                    "alice\x7f",
		"C1 control":             "alice\u0085",
		"leading space":          " alice",
		"trailing tab":           "alice\t",
		"257 characters":         strings.Repeat("a", 257),
	}
	for name, id := range cases {
		t.Run(name, func(t *testing.T) {
			scope, err := loomflow.UserScope(id)
			if err == nil {
				t.Fatalf("UserScope(%q) = %v, want an error", id, scope)
			}
			if !errors.Is(err, loomflow.ErrInvalidUserID) {
				t.Fatalf("UserScope(%q) error %v does not wrap ErrInvalidUserID", id, err)
			}
		})
	}
}

func TestUserScopeSentinelErrorPointsAtAnonymousScope(t *testing.T) {
	_, err := loomflow.UserScope("__jeeves_anon_user__")
	if err == nil || !strings.Contains(err.Error(), "scope.anonymous") {
		t.Fatalf("error %v should tell the caller to use the anonymous scope", err)
	}
}

func TestUserScopeAcceptsOrdinaryIDs(t *testing.T) {
	for _, id := range []string{"alice", "user-42@example.com", "Zoë", strings.Repeat("a", 256), "__jeeves_anon_user__x"} {
		scope, err := loomflow.UserScope(id)
		if err != nil {
			t.Fatalf("UserScope(%q): %v", id, err)
		}
		if scope.GetUserId() != id || scope.GetAnonymous() != nil {
			t.Fatalf("UserScope(%q) = %v, want user_id %q", id, scope, id)
		}
	}
}

func TestMustUserScopePanicsOnTheSentinel(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("MustUserScope accepted the sentinel")
		}
	}()
	loomflow.MustUserScope("__jeeves_anon_user__")
}

func TestAnonymousScopeIsTheTypedChoiceNotAString(t *testing.T) {
	scope := loomflow.AnonymousScope()
	if scope.GetAnonymous() == nil || scope.GetUserId() != "" {
		t.Fatalf("AnonymousScope() = %v, want the anonymous oneof case", scope)
	}
}
