package batch_test

import (
	"slices"
	"strings"
	"testing"

	"custody"
	"custody/batch"
)

// FuzzParseFilter feeds the OData $filter parser arbitrary expressions. It
// must not panic, refuse with a 400 *custody.Error, and a parsed filter
// must evaluate any properties without panicking.
func FuzzParseFilter(f *testing.F) {
	for _, s := range []string{
		"", "state eq 'active'", "state eq 'active' or state eq 'completed'", "(state eq 'active')",
		"not state eq 'x'", "state eq", "eq", "'", "state eq 'a''b'", "((((((((((state eq 'a'))))))))))",
		strings.Repeat("(", 5000), strings.Repeat("state eq 'a' and ", 300) + "state eq 'a'",
		"startswith(id, 'job')", "id eq '%2F'", "executionInfo/exitCode eq 9223372036854775807",
		"state eq 'active\x00'", strings.Repeat("a", 500<<10),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, expr string) {
		flt, err := batch.ParseFilter(expr, "state", "id", "executionInfo/exitCode")
		if err != nil {
			if custody.ErrorKind(err) != custody.KindInvalid {
				t.Fatalf("ParseFilter(%q) = %v, want a KindInvalid error", expr, err)
			}
			return
		}
		if flt == nil {
			return
		}
		props := map[string]string{"state": "active", "id": "job1", "executionInfo/exitCode": "0"}
		// The store selects by States alone: a matching record's state
		// must be among them.
		if states := flt.States(); flt.Match(props) && states != nil && !slices.Contains(states, "active") {
			t.Fatalf("ParseFilter(%q) matches a record in state active, but States() = %v", expr, states)
		}
		flt.Match(map[string]string{})
	})
}
