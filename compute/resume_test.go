package compute

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"

	"custody"
	"custody/batch"
	"custody/node"
)

// TestResumeAfterTakeover: a server that takes over (a new active replica)
// resumes a remote node from the runs its agent holds. A task the record has
// on the node and the agent runs goes on running; one whose run ended but
// whose report the former server never took is reported to the new one and
// completes; one that never reached the agent is requeued once; a run the
// agent holds that the record does not have there is killed. Reports that
// come before the node resumed are refused, to be sent again.
func TestResumeAfterTakeover(t *testing.T) {
	ctx := context.Background()
	dek, err := batch.NewDEK(batch.GenerateDEKBytes(), 1)
	if err != nil {
		t.Fatal(err)
	}
	pools, nodes := &memPools{m: map[string]*Pool{}}, &memNodes{m: map[string]RemoteNode{}}
	tasks := &fakeTasks{running: map[string]string{}, requeued: map[string]int{}}
	cfg := Config{Store: pools, Nodes: nodes, Tasks: tasks, Keys: oneAccount{&batch.Account{Name: "acct", UID: "uid"}, dek}, Poll: time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Recover: tasks.recoverRunning}
	s1 := New(cfg)
	if _, err := s1.CreatePool(ctx, "acct", &Pool{ID: "p1", VMSize: "standard_d2s_v3", TargetDedicated: 1, TaskSlotsPerNode: 4}); err != nil {
		t.Fatal(err)
	}
	a, cred, err := s1.AddRemoteNode(ctx, "acct", "p1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s1.Join(ctx, cred, node.JoinRequest{}); err != nil {
		t.Fatal(err)
	}
	// What the former active left: three tasks on record as running on
	// node a.
	for _, k := range []string{"j/running", "j/ended", "j/undelivered"} {
		tasks.running[k] = a
	}
	held := []node.RunState{
		{RunID: "j/running/7", Kind: "task", JobID: "j", TaskID: "running"},
		{RunID: "j/ended/8", Kind: "task", JobID: "j", TaskID: "ended", Ended: true},
		{RunID: "j/stray/9", Kind: "task", JobID: "j", TaskID: "stray"},
	}

	s2 := New(cfg) // the new active
	s2.startUp(ctx)
	ended := node.ReportRequest{Finished: []node.RunReport{{RunID: "j/ended/8", ExitCode: 0, StartTime: time.Now(), EndTime: time.Now()}}}
	if err := s2.Report(ctx, cred, ended); custody.ErrorKind(err) != custody.KindUnavailable {
		t.Fatalf("a report before the node resumed: %v, want a 503 to retry", err)
	}
	resp, err := s2.Sync(ctx, cred, node.SyncRequest{NodeID: a, Running: []string{"j/running/7", "j/stray/9"}, Runs: held})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Rejoin || resp.Drop || resp.Reboot {
		t.Fatalf("resume answered %+v; want the node to go on", resp)
	}
	if !slices.Equal(resp.Kill, []string{"j/stray/9"}) {
		t.Errorf("killed %v, want the stray run only", resp.Kill)
	}
	if st := s2.NodeStates("acct", "p1"); len(st) != 1 || st[0] != NodeRunning {
		t.Errorf("states after resume %v, want running", st)
	}
	check := func(when, task, wantNode string, wantRequeued int) {
		t.Helper()
		if n, r := tasks.state("j/" + task); n != wantNode || r != wantRequeued {
			t.Errorf("%s: task %s runs on %q, requeued %d times; want %q, %d", when, task, n, r, wantNode, wantRequeued)
		}
	}
	check("after resume", "running", a, 0)
	check("after resume", "ended", a, 0)
	check("after resume", "undelivered", "", 1)

	// The ended run's report, sent again, now counts; so does the running
	// one's when it ends.
	if err := s2.Report(ctx, cred, ended); err != nil {
		t.Fatal(err)
	}
	check("after the late report", "ended", "", 0)
	if err := s2.Report(ctx, cred, node.ReportRequest{Finished: []node.RunReport{{RunID: "j/running/7", StartTime: time.Now(), EndTime: time.Now()}}}); err != nil {
		t.Fatal(err)
	}
	check("at the end", "running", "", 0)
	check("at the end", "undelivered", "", 1)
	if st := s2.NodeStates("acct", "p1"); len(st) != 1 || st[0] != NodeIdle {
		t.Errorf("states at the end %v, want idle", st)
	}

	// An agent that syncs without naming its node (or a node lost since)
	// joins again, as before.
	s3 := New(cfg)
	s3.startUp(ctx)
	if resp, err := s3.Sync(ctx, cred, node.SyncRequest{}); err != nil || !resp.Rejoin {
		t.Fatalf("sync without the node id: %+v %v; want rejoin", resp, err)
	}
}
