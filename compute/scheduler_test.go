package compute

import (
	"reflect"
	"testing"
)

func TestPlaceSpreadPackAndSlots(t *testing.T) {
	nodes := []SlotNode{{ID: "a", Free: 2}, {ID: "b", Free: 2}}
	tasks := []Candidate{{TaskID: "1", RequiredSlots: 1}, {TaskID: "2", RequiredSlots: 1}, {TaskID: "3", RequiredSlots: 2}, {TaskID: "4", RequiredSlots: 1}, {TaskID: "5", RequiredSlots: 1}}
	got := Place(nodes, tasks, "spread")
	var ids []string
	for _, p := range got {
		ids = append(ids, p.TaskID+"@"+p.NodeID)
	}
	// Spread: 1 on a, 2 on b; 3 needs 2 slots and fits nowhere; 4 on a, 5 on b.
	if want := []string{"1@a", "2@b", "4@a", "5@b"}; !reflect.DeepEqual(ids, want) {
		t.Errorf("spread = %v, want %v", ids, want)
	}
	ids = nil
	for _, p := range Place(nodes, tasks, "pack") {
		ids = append(ids, p.TaskID+"@"+p.NodeID)
	}
	// Pack fills a first, so the 2-slot task gets all of b.
	if want := []string{"1@a", "2@a", "3@b"}; !reflect.DeepEqual(ids, want) {
		t.Errorf("pack = %v, want %v", ids, want)
	}
	if got := Place(nil, tasks, "spread"); len(got) != 0 {
		t.Errorf("placed on no nodes: %v", got)
	}
}

func TestDependenciesMet(t *testing.T) {
	st := map[string]DependencyState{"a": DepSatisfied, "b": DepWaiting, "c": DepFailed, "1": DepSatisfied, "2": DepSatisfied, "3": DepWaiting}
	status := func(id string) (DependencyState, bool) { s, ok := st[id]; return s, ok }
	cases := []struct {
		d            Dependencies
		met, blocked bool
	}{
		{Dependencies{TaskIDs: []string{"a"}}, true, false},
		{Dependencies{TaskIDs: []string{"a", "b"}}, false, false},
		{Dependencies{TaskIDs: []string{"c"}}, false, true},
		{Dependencies{TaskIDs: []string{"missing"}}, false, false},
		{Dependencies{Ranges: [][2]int{{1, 2}}}, true, false},
		{Dependencies{Ranges: [][2]int{{1, 3}}}, false, false},
		{Dependencies{Ranges: [][2]int{{7, 9}}}, true, false}, // ids in ranges that do not exist are ignored
	}
	for _, c := range cases {
		met, blocked := DependenciesMet(c.d, status)
		if met != c.met || blocked != c.blocked {
			t.Errorf("%+v: met %v blocked %v, want %v %v", c.d, met, blocked, c.met, c.blocked)
		}
	}
}

func TestDecide(t *testing.T) {
	cases := []struct {
		failed, terminated, lost bool
		retries, max             int
		want                     Outcome
	}{
		{false, false, false, 0, 0, OutcomeSucceeded},
		{true, false, false, 0, 0, OutcomeFailed},
		{true, false, false, 0, 2, OutcomeRetry},
		{true, false, false, 2, 2, OutcomeFailed},
		{true, false, false, 50, -1, OutcomeRetry},
		{true, true, false, 0, 5, OutcomeFailed},
		{false, false, true, 0, 0, OutcomeRequeue},
	}
	for _, c := range cases {
		if got := Decide(c.failed, c.terminated, c.lost, c.retries, c.max); got != c.want {
			t.Errorf("Decide(%+v) = %v, want %v", c, got, c.want)
		}
	}
}

func TestParseDuration(t *testing.T) {
	for in, want := range map[string]string{"PT1S": "1s", "PT1H30M": "1h30m0s", "P1DT2S": "24h0m2s", "PT0.5S": "500ms"} {
		d, err := parseDuration(in)
		if err != nil || d.String() != want {
			t.Errorf("parseDuration(%q) = %v, %v; want %s", in, d, err, want)
		}
	}
	for _, bad := range []string{"", "P", "1S", "PTXS", "PT1"} {
		if _, err := parseDuration(bad); err == nil {
			t.Errorf("parseDuration(%q) succeeded", bad)
		}
	}
}

func TestValidatePool(t *testing.T) {
	p := &Pool{ID: "p1", VMSize: "Standard_D2s_v3"}
	if err := p.Validate(); err != nil || p.TaskSlotsPerNode != 1 || p.VMSize != "standard_d2s_v3" || p.NodeFillType != "spread" {
		t.Fatalf("defaults: %+v %v", p, err)
	}
	for _, bad := range []*Pool{{ID: "bad id", VMSize: "standard_d2s_v3"}, {ID: "p", VMSize: "huge"}, {ID: "p", VMSize: "standard_a1_v2", TaskSlotsPerNode: 5},
		{ID: "p", VMSize: "standard_a1_v2", TargetDedicated: -1}, {ID: "p", VMSize: "standard_a1_v2", TargetDedicated: MaxNodesPerPool + 1}} {
		if err := bad.Validate(); err == nil {
			t.Errorf("pool %+v passed validation", bad)
		}
	}
}
