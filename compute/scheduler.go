package compute

import (
	"sort"
	"strconv"
)

// The scheduler is pure logic: given a snapshot of a pool's nodes and its
// runnable tasks (read through State), it decides placements, which the
// service then applies through Planner. It is tested with a harness over
// the real store (see scheduler_test.go).

// SlotNode is a node that can take work, as the scheduler sees it.
type SlotNode struct {
	ID string
	// Free is the number of free task slots.
	Free int
	// Running is the number of slots in use (spread prefers the emptiest).
	Running int
	// LowPriority marks a low-priority (Spot) node.
	LowPriority bool
}

// Candidate is a runnable task: active, of an active job, dependencies met.
type Candidate struct {
	JobID         string
	TaskID        string
	RequiredSlots int
	// Exclusive asks for a node with nothing running, and takes all of
	// its slots (a job manager task with runExclusive).
	Exclusive bool
	// DedicatedOnly keeps the task off low-priority nodes.
	DedicatedOnly bool
	// Exclude names nodes the task may not go to (its job's preparation
	// task failed there).
	Exclude map[string]bool
}

// Placement puts a candidate on a node.
type Placement struct {
	Candidate
	NodeID string
}

// Place assigns candidates, in order, to nodes with enough free slots. With
// fill "pack" a task goes to the fullest node it fits on, with "spread" (the
// default) to the emptiest. A task that fits nowhere is skipped; later
// smaller tasks may still be placed. Tasks needing more slots than any node
// has are never placed (the service rejects them at submission).
func Place(nodes []SlotNode, tasks []Candidate, fill string) []Placement {
	ns := make([]SlotNode, len(nodes))
	copy(ns, nodes)
	var out []Placement
	for _, t := range tasks {
		need := max(t.RequiredSlots, 1)
		best := -1
		for i := range ns {
			if ns[i].Free < need || t.Exclude[ns[i].ID] || (t.DedicatedOnly && ns[i].LowPriority) ||
				(t.Exclusive && (ns[i].Running > 0 || ns[i].Free == 0)) {
				continue
			}
			if best < 0 {
				best = i
				continue
			}
			if fill == "pack" {
				if ns[i].Running > ns[best].Running {
					best = i
				}
			} else if ns[i].Running < ns[best].Running {
				best = i
			}
		}
		if best < 0 {
			continue
		}
		if t.Exclusive {
			need = ns[best].Free
			t.RequiredSlots = need
		}
		ns[best].Free -= need
		ns[best].Running += need
		out = append(out, Placement{Candidate: t, NodeID: ns[best].ID})
	}
	return out
}

// Dependencies are the tasks a task depends on: ids and inclusive ranges of
// integer ids.
type Dependencies struct {
	TaskIDs []string
	Ranges  [][2]int
}

// DependencyState is how a dependency stands.
type DependencyState int

const (
	DepWaiting   DependencyState = iota // not completed yet (or missing)
	DepSatisfied                        // completed successfully
	DepFailed                           // completed with a failure
)

// DependenciesMet reports whether every dependency completed successfully.
// status gives each task id's state; ids in ranges that do not exist are
// ignored, as in Azure. blocked is set when a dependency failed, so the task
// will never run (Azure's default dependencyAction "block").
func DependenciesMet(d Dependencies, status func(taskID string) (DependencyState, bool)) (met, blocked bool) {
	met = true
	check := func(id string, mustExist bool) {
		st, ok := status(id)
		if !ok {
			if mustExist {
				met = false
			}
			return
		}
		switch st {
		case DepWaiting:
			met = false
		case DepFailed:
			met, blocked = false, true
		}
	}
	for _, id := range d.TaskIDs {
		check(id, true)
	}
	for _, r := range d.Ranges {
		for i := r[0]; i <= r[1]; i++ {
			check(strconv.Itoa(i), false)
		}
	}
	return met, blocked
}

// Outcome is what happens to a task after a run ends.
type Outcome int

const (
	OutcomeSucceeded Outcome = iota // completed, result success
	OutcomeFailed                   // completed, result failure
	OutcomeRetry                    // back to active, retryCount+1
	OutcomeRequeue                  // back to active, requeueCount+1 (not the task's fault)
)

// Decide returns the outcome of a finished run. maxRetries of -1 retries
// without limit. A run killed by the service (terminate) is never retried;
// a run lost with its node or stopped by a key loss is requeued.
func Decide(failed, terminated, lost bool, retryCount, maxRetries int) Outcome {
	switch {
	case lost:
		return OutcomeRequeue
	case terminated:
		return OutcomeFailed
	case !failed:
		return OutcomeSucceeded
	case maxRetries < 0 || retryCount < maxRetries:
		return OutcomeRetry
	default:
		return OutcomeFailed
	}
}

// sortNodes orders nodes by id, for stable placements.
func sortNodes(ns []SlotNode) {
	sort.Slice(ns, func(i, j int) bool { return ns[i].ID < ns[j].ID })
}
