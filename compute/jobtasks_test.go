package compute

import (
	"reflect"
	"testing"
)

// TestPlaceJobManagerAndExclusions: an exclusive task takes an empty node
// and all its slots; a dedicated-only task skips low-priority nodes; a
// task skips the nodes its job's preparation task failed on.
func TestPlaceJobManagerAndExclusions(t *testing.T) {
	nodes := []SlotNode{{ID: "a", Free: 1, Running: 1}, {ID: "b", Free: 2}, {ID: "c", Free: 2, LowPriority: true}}
	place := func(cs ...Candidate) []string {
		var out []string
		for _, p := range Place(nodes, cs, "spread") {
			out = append(out, p.TaskID+"@"+p.NodeID+"/"+itoa(p.RequiredSlots))
		}
		return out
	}
	// The manager goes to an empty node (b, not a which runs something)
	// and takes both slots, so the next task goes to c.
	if got, want := place(Candidate{TaskID: "jm", Exclusive: true}, Candidate{TaskID: "t", RequiredSlots: 1}), []string{"jm@b/2", "t@c/1"}; !reflect.DeepEqual(got, want) {
		t.Errorf("exclusive = %v, want %v", got, want)
	}
	// Dedicated only: not c, though it is the emptiest left.
	if got, want := place(Candidate{TaskID: "jm", Exclusive: true, DedicatedOnly: true}, Candidate{TaskID: "x", Exclusive: true, DedicatedOnly: true}), []string{"jm@b/2"}; !reflect.DeepEqual(got, want) {
		t.Errorf("dedicated only = %v, want %v", got, want)
	}
	// Excluded nodes are skipped.
	if got, want := place(Candidate{TaskID: "t", RequiredSlots: 1, Exclude: map[string]bool{"b": true, "c": true}}), []string{"t@a/1"}; !reflect.DeepEqual(got, want) {
		t.Errorf("exclude = %v, want %v", got, want)
	}
	if got := place(Candidate{TaskID: "t", Exclude: map[string]bool{"a": true, "b": true, "c": true}}); len(got) != 0 {
		t.Errorf("placed on an excluded node: %v", got)
	}
}
