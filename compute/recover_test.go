package compute

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"custody/batch"
	"custody/node"
)

// fakeTasks keeps which node each running task runs on and how often each
// task was requeued.
type fakeTasks struct {
	mu       sync.Mutex
	running  map[string]string // job/task -> node id
	requeued map[string]int
}

func (f *fakeTasks) Runnable(context.Context, string, string, int) ([]RunnableTask, error) {
	return nil, nil
}

func (f *fakeTasks) StartTask(context.Context, string, string, string, string, time.Time) (TaskRun, bool, error) {
	return TaskRun{}, false, nil
}

func (f *fakeTasks) StartTasks(_ context.Context, _ string, starts []TaskStart, _ time.Time) ([]StartedTask, error) {
	return make([]StartedTask, len(starts)), nil
}

func (f *fakeTasks) FinishTasks(ctx context.Context, account string, ends []TaskEnd) error {
	for _, e := range ends {
		if err := f.FinishTask(ctx, account, e.JobID, e.TaskID, e.Result); err != nil {
			return err
		}
	}
	return nil
}

func (f *fakeTasks) FinishTask(_ context.Context, _, jobID, taskID string, res RunResult) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	k := jobID + "/" + taskID
	if n, ok := f.running[k]; !ok || n != res.NodeID {
		return nil
	}
	delete(f.running, k)
	if res.Outcome == OutcomeRequeue {
		f.requeued[k]++
	}
	return nil
}

// recoverRunning is what the server's Recover does (BatchTasks.RequeueRunning
// over every account): requeue each running task unless hold keeps it.
func (f *fakeTasks) recoverRunning(_ context.Context, hold func(string) bool) []HeldTask {
	f.mu.Lock()
	defer f.mu.Unlock()
	var held []HeldTask
	for k, n := range f.running {
		if hold(n) {
			held = append(held, HeldTask{Account: "acct", JobID: "j", TaskID: k[len("j/"):], NodeID: n})
			continue
		}
		delete(f.running, k)
		f.requeued[k]++
	}
	return held
}

func (f *fakeTasks) state(k string) (node string, requeued int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.running[k], f.requeued[k]
}

// TestRecoverHoldsTasksOfRemoteNodes: after a restart, tasks left running
// on local nodes are requeued at once; those on a stored remote node stay
// running (not schedulable) until its agent joins again, having killed its
// runs, or until the node is lost; each is requeued exactly once.
func TestRecoverHoldsTasksOfRemoteNodes(t *testing.T) {
	ctx := context.Background()
	dek, err := batch.NewDEK(batch.GenerateDEKBytes(), 1)
	if err != nil {
		t.Fatal(err)
	}
	pools, nodes := &memPools{m: map[string]*Pool{}}, &memNodes{m: map[string]RemoteNode{}}
	tasks := &fakeTasks{running: map[string]string{}, requeued: map[string]int{}}
	var mu sync.Mutex
	clock := time.Now()
	cfg := Config{Store: pools, Nodes: nodes, Tasks: tasks, Keys: oneAccount{&batch.Account{Name: "acct", UID: "uid"}, dek}, Poll: time.Millisecond,
		Logger:  slog.New(slog.NewTextHandler(io.Discard, nil)),
		Now:     func() time.Time { mu.Lock(); defer mu.Unlock(); return clock },
		Recover: tasks.recoverRunning}
	s1 := New(cfg)
	if _, err := s1.CreatePool(ctx, "acct", &Pool{ID: "p1", VMSize: "standard_d2s_v3", TargetDedicated: 3}); err != nil {
		t.Fatal(err)
	}
	a, credA, err := s1.AddRemoteNode(ctx, "acct", "p1")
	if err != nil {
		t.Fatal(err)
	}
	gone, _, err := s1.AddRemoteNode(ctx, "acct", "p1")
	if err != nil {
		t.Fatal(err)
	}
	early, credEarly, err := s1.AddRemoteNode(ctx, "acct", "p1")
	if err != nil {
		t.Fatal(err)
	}
	// What the previous server process left running.
	tasks.running["j/onA"] = a
	tasks.running["j/onGone"] = gone
	tasks.running["j/onEarly"] = early
	tasks.running["j/onLocal"] = "tvmps_local_d"

	// The restart. One agent joins before recovery runs (it killed its
	// runs before joining).
	s2 := New(cfg)
	if resp, err := s2.Sync(ctx, credEarly, node.SyncRequest{}); err != nil || !resp.Rejoin {
		t.Fatalf("early sync: %+v %v", resp, err)
	}
	if _, err := s2.Join(ctx, credEarly, node.JoinRequest{}); err != nil {
		t.Fatal(err)
	}
	s2.loadRemoteNodes(ctx)
	s2.recover(ctx)

	check := func(when, task, wantNode string, wantRequeued int) {
		t.Helper()
		if n, r := tasks.state("j/" + task); n != wantNode || r != wantRequeued {
			t.Errorf("%s: task %s runs on %q, requeued %d times; want %q, %d", when, task, n, r, wantNode, wantRequeued)
		}
	}
	check("after recovery", "onLocal", "", 1)
	check("after recovery", "onEarly", "", 1)
	check("after recovery", "onA", a, 0)
	check("after recovery", "onGone", gone, 0)

	// A's agent syncs: told to rejoin, it kills its runs; until it joins,
	// its task is still held.
	if resp, err := s2.Sync(ctx, credA, node.SyncRequest{Running: []string{"j/onA/1"}}); err != nil || !resp.Rejoin {
		t.Fatalf("sync of A: %+v %v", resp, err)
	}
	check("after A synced", "onA", a, 0)
	if _, err := s2.Join(ctx, credA, node.JoinRequest{}); err != nil {
		t.Fatal(err)
	}
	check("after A joined", "onA", "", 1)
	check("after A joined", "onGone", gone, 0)

	// The other node never comes back: its task is requeued once the node
	// has not synced for the lost timeout.
	mu.Lock()
	clock = clock.Add(cfg.Poll*3 + 6*time.Second)
	mu.Unlock()
	s2.detectLost(ctx)
	check("after the lost timeout", "onGone", "", 1)
	s2.detectLost(ctx)
	if _, err := s2.Join(ctx, credA, node.JoinRequest{}); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"onA", "onGone", "onEarly", "onLocal"} {
		check("at the end", k, "", 1)
	}
}

func (f *fakeTasks) Started(context.Context, string, string, string, string, time.Time) (bool, error) {
	return false, nil
}

func (f *fakeTasks) JobPreparation(context.Context, string, string) (JobTaskRun, bool, error) {
	return JobTaskRun{}, false, nil
}
