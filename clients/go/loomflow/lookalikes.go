package loomflow

import (
	"sort"
	"strings"
)

// ReadsAsSentinel reports whether id is the reserved anonymous sentinel
// "__jeeves_anon_user__" or a Unicode look-alike of it: compatibility forms,
// case beyond ASCII, the UTS #39 confusables of its characters (a digit zero of
// any script for "o", …) and invisible or blank fillers anywhere. The server
// refuses such ids on every RPC (violation id user_id.not_reserved); this is
// the same decision, made from a table generated from the server's own
// folding (lookalikes_table.go), so client and server agree.
func ReadsAsSentinel(id string) bool {
	matched := 0
	for _, r := range id {
		folded, ok := foldRune(r)
		if !ok || !strings.HasPrefix(sentinelSkeleton[matched:], folded) {
			return false
		}
		matched += len(folded)
	}
	return matched == len(sentinelSkeleton)
}

// foldRune is what r reads as, and false when r cannot be part of a look-alike.
func foldRune(r rune) (string, bool) {
	if folded, ok := sentinelFolds[r]; ok {
		return folded, true
	}
	i := sort.Search(len(sentinelIgnored), func(i int) bool { return sentinelIgnored[i][1] >= r })
	if i < len(sentinelIgnored) && sentinelIgnored[i][0] <= r {
		return "", true
	}
	return "", false
}
