package compat_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/batch/azbatch"
)

// Job manager, preparation and release tasks, exit conditions and task
// reactivate, driven with azbatch and observed from the tasks' own marks.

func jobState(t *testing.T, c *azbatch.Client, id string) azbatch.Job {
	t.Helper()
	j, err := c.GetJob(context.Background(), id, nil)
	if err != nil {
		t.Fatalf("get job %s: %v", id, err)
	}
	return j.Job
}

func waitJob(t *testing.T, c *azbatch.Client, id string, state azbatch.JobState) azbatch.Job {
	t.Helper()
	var j azbatch.Job
	waitFor(t, 30*time.Second, "job "+id+" to be "+string(state), func() (bool, string) {
		j = jobState(t, c, id)
		return *j.State == state, string(*j.State)
	})
	return j
}

func exitCode(c int32, job azbatch.JobAction, dep azbatch.DependencyAction) azbatch.ExitCodeMapping {
	o := &azbatch.ExitOptions{}
	if job != "" {
		o.JobAction = to.Ptr(job)
	}
	if dep != "" {
		o.DependencyAction = to.Ptr(dep)
	}
	return azbatch.ExitCodeMapping{Code: to.Ptr(c), ExitOptions: o}
}

// TestJobManagerExitConditionsReactivate: a job manager task runs first and
// alone on its node and ends its job; exit codes map to dependency and job
// actions; a failed task is reactivated and runs again; what Azure refuses
// is refused with its codes.
func TestJobManagerExitConditionsReactivate(t *testing.T) {
	ts := computeServer(t)
	mustBatchAccount(t, ts, "rg-jobtasks", "jobtasks1")
	c := dataClient(t, ts, "jobtasks1")
	ctx := context.Background()
	mustPool(t, c, "p1", 1, 2)
	m := newMarkServer(t)

	// The job manager: created with the job, started before the job's
	// other task and alone on the 2-slot node; its completion ends the job.
	if _, err := c.CreateJob(ctx, azbatch.CreateJobContent{ID: to.Ptr("jm"), PoolInfo: &azbatch.PoolInfo{PoolID: to.Ptr("p1")},
		JobManagerTask: &azbatch.JobManagerTask{ID: to.Ptr("manager"), CommandLine: to.Ptr(m.Mark("jm-start") + "; sleep 1.5; " + m.Mark("jm-end"))}}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateTask(ctx, "jm", azbatch.CreateTaskContent{ID: to.Ptr("worker"), CommandLine: to.Ptr(m.Mark("worker") + "; sleep 30")}, nil); err != nil {
		t.Fatal(err)
	}
	j := waitJob(t, c, "jm", azbatch.JobStateCompleted)
	if r := j.ExecutionInfo.TerminationReason; r == nil || *r != "JMComplete" {
		t.Errorf("terminateReason = %v, want JMComplete", r)
	}
	if mt := taskState(t, c, "jm", "manager"); *mt.State != azbatch.TaskStateCompleted || *mt.ExecutionInfo.ExitCode != 0 {
		t.Errorf("manager task: %s exit %v", *mt.State, mt.ExecutionInfo.ExitCode)
	}
	if j.JobManagerTask == nil || *j.JobManagerTask.ID != "manager" {
		t.Errorf("job's jobManagerTask not echoed: %+v", j.JobManagerTask)
	}
	marks := m.Marks()
	if len(marks) < 2 || marks[0] != "jm-start" || marks[1] != "jm-end" {
		t.Errorf("marks = %v, want the manager alone first (jm-start, jm-end), the worker only after", marks)
	}

	// Exit conditions: dependency actions, then a job action.
	if _, err := c.CreateJob(ctx, azbatch.CreateJobContent{ID: to.Ptr("exits"), PoolInfo: &azbatch.PoolInfo{PoolID: to.Ptr("p1")},
		UsesTaskDependencies: to.Ptr(true), OnTaskFailure: to.Ptr(azbatch.OnTaskFailurePerformExitOptionsJobAction)}, nil); err != nil {
		t.Fatal(err)
	}
	deps := func(ids ...string) *azbatch.TaskDependencies { return &azbatch.TaskDependencies{TaskIDs: ids} }
	g := azbatch.TaskGroup{Value: []azbatch.CreateTaskContent{
		{ID: to.Ptr("fails-satisfies"), CommandLine: to.Ptr("exit 3"), ExitConditions: &azbatch.ExitConditions{
			ExitCodes: []azbatch.ExitCodeMapping{exitCode(3, azbatch.JobActionNone, azbatch.DependencyActionSatisfy)}}},
		{ID: to.Ptr("after-satisfied"), CommandLine: to.Ptr(m.Mark("after-satisfied")), DependsOn: deps("fails-satisfies")},
		{ID: to.Ptr("succeeds-blocks"), CommandLine: to.Ptr("exit 0"), ExitConditions: &azbatch.ExitConditions{
			ExitCodes: []azbatch.ExitCodeMapping{exitCode(0, "", azbatch.DependencyActionBlock)}}},
		{ID: to.Ptr("after-blocked"), CommandLine: to.Ptr(m.Mark("after-blocked")), DependsOn: deps("succeeds-blocks")},
	}}
	if _, err := c.CreateTaskCollection(ctx, "exits", g, nil); err != nil {
		t.Fatal(err)
	}
	waitTask(t, c, "exits", "after-satisfied", 20*time.Second)
	waitTask(t, c, "exits", "succeeds-blocks", 20*time.Second)
	if m.Count("after-satisfied") != 1 {
		t.Errorf("the dependent of a failed task with dependencyAction satisfy did not run")
	}
	time.Sleep(700 * time.Millisecond)
	if tk := taskState(t, c, "exits", "after-blocked"); *tk.State != azbatch.TaskStateActive || m.Count("after-blocked") != 0 {
		t.Errorf("the dependent of a task whose exit code 0 maps to block is %s (ran %d times), want active and never run", *tk.State, m.Count("after-blocked"))
	}
	if st := jobState(t, c, "exits"); *st.State != azbatch.JobStateActive {
		t.Errorf("job is %s after exit codes mapped to jobAction none, want active", *st.State)
	}
	// An exit code in a range whose jobAction is terminate ends the job.
	if _, err := c.CreateTask(ctx, "exits", azbatch.CreateTaskContent{ID: to.Ptr("terminates"), CommandLine: to.Ptr("exit 7"),
		ExitConditions: &azbatch.ExitConditions{ExitCodeRanges: []azbatch.ExitCodeRangeMapping{{Start: to.Ptr[int32](5), End: to.Ptr[int32](9),
			ExitOptions: &azbatch.ExitOptions{JobAction: to.Ptr(azbatch.JobActionTerminate)}}}}}, nil); err != nil {
		t.Fatal(err)
	}
	j = waitJob(t, c, "exits", azbatch.JobStateCompleted)
	if r := j.ExecutionInfo.TerminationReason; r == nil || *r != "TaskFailed" {
		t.Errorf("terminateReason = %v, want TaskFailed", r)
	}

	// default: a nonzero exit code not listed disables the job.
	if _, err := c.CreateJob(ctx, azbatch.CreateJobContent{ID: to.Ptr("disables"), PoolInfo: &azbatch.PoolInfo{PoolID: to.Ptr("p1")},
		OnTaskFailure: to.Ptr(azbatch.OnTaskFailurePerformExitOptionsJobAction)}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateTask(ctx, "disables", azbatch.CreateTaskContent{ID: to.Ptr("t"), CommandLine: to.Ptr("exit 2"),
		ExitConditions: &azbatch.ExitConditions{ExitCodes: []azbatch.ExitCodeMapping{exitCode(1, azbatch.JobActionTerminate, "")},
			Default: &azbatch.ExitOptions{JobAction: to.Ptr(azbatch.JobActionDisable)}}}, nil); err != nil {
		t.Fatal(err)
	}
	waitJob(t, c, "disables", azbatch.JobStateDisabled)

	// A job that takes no job actions refuses tasks that ask for one.
	if _, err := c.CreateJob(ctx, azbatch.CreateJobContent{ID: to.Ptr("plain"), PoolInfo: &azbatch.PoolInfo{PoolID: to.Ptr("p1")}}, nil); err != nil {
		t.Fatal(err)
	}
	_, err := c.CreateTask(ctx, "plain", azbatch.CreateTaskContent{ID: to.Ptr("x"), CommandLine: to.Ptr("true"),
		ExitConditions: &azbatch.ExitConditions{Default: &azbatch.ExitOptions{JobAction: to.Ptr(azbatch.JobActionTerminate)}}}, nil)
	if msg := wantResponseError(t, err, 400, "InvalidPropertyValue"); !strings.Contains(msg, "onTaskFailure") {
		t.Errorf("message %q does not say what to change", msg)
	}

	// Reactivate: a failed task runs again; the rest is refused.
	flaky := "if " + m.Has("flaky-once") + "; then exit 0; fi; " + m.Mark("flaky-once") + "; exit 1"
	for id, cmd := range map[string]string{"flaky": flaky, "ok": "true", "long": "sleep 30"} {
		if _, err := c.CreateTask(ctx, "plain", azbatch.CreateTaskContent{ID: to.Ptr(id), CommandLine: to.Ptr(cmd)}, nil); err != nil {
			t.Fatal(err)
		}
	}
	if tk := waitTask(t, c, "plain", "flaky", 20*time.Second); *tk.ExecutionInfo.Result != azbatch.TaskExecutionResultFailure {
		t.Fatalf("flaky's first run: %s", *tk.ExecutionInfo.Result)
	}
	waitTask(t, c, "plain", "ok", 20*time.Second)
	if _, err := c.ReactivateTask(ctx, "plain", "flaky", nil); err != nil {
		t.Fatalf("reactivate: %v", err)
	}
	tk := waitTask(t, c, "plain", "flaky", 20*time.Second)
	if *tk.ExecutionInfo.Result != azbatch.TaskExecutionResultSuccess || *tk.ExecutionInfo.RetryCount != 0 || tk.ExecutionInfo.FailureInfo != nil {
		t.Errorf("reactivated task: result %s, retryCount %d, failureInfo %+v; want success, 0, none", *tk.ExecutionInfo.Result, *tk.ExecutionInfo.RetryCount, tk.ExecutionInfo.FailureInfo)
	}
	_, err = c.ReactivateTask(ctx, "plain", "ok", nil)
	wantResponseError(t, err, 409, "TaskCompletedSuccessfully")
	waitFor(t, 20*time.Second, "long to run", func() (bool, string) {
		s := *taskState(t, c, "plain", "long").State
		return s == azbatch.TaskStateRunning, string(s)
	})
	_, err = c.ReactivateTask(ctx, "plain", "long", nil)
	wantResponseError(t, err, 409, "TaskNotCompleted")
	_, err = c.ReactivateTask(ctx, "plain", "nosuch", nil)
	wantResponseError(t, err, 404, "TaskNotFound")
	if _, err := c.TerminateTask(ctx, "plain", "long", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := c.TerminateJob(ctx, "plain", nil); err != nil {
		t.Fatal(err)
	}
	_, err = c.ReactivateTask(ctx, "plain", "long", nil)
	wantResponseError(t, err, 409, "JobCompleted")

	// A node that reboots runs the preparation task again before the
	// job's next task, unless it succeeded and rerunOnNodeRebootAfterSuccess
	// is false.
	for _, id := range []string{"rerun", "once"} {
		prep := &azbatch.JobPreparationTask{CommandLine: to.Ptr(m.Mark("prep-" + id)), RerunOnNodeRebootAfterSuccess: to.Ptr(id == "rerun")}
		if _, err := c.CreateJob(ctx, azbatch.CreateJobContent{ID: to.Ptr(id), PoolInfo: &azbatch.PoolInfo{PoolID: to.Ptr("p1")}, JobPreparationTask: prep}, nil); err != nil {
			t.Fatal(err)
		}
		if _, err := c.CreateTask(ctx, id, azbatch.CreateTaskContent{ID: to.Ptr("before"), CommandLine: to.Ptr("true")}, nil); err != nil {
			t.Fatal(err)
		}
		waitTask(t, c, id, "before", 20*time.Second)
	}
	nodes, err := c.NewListNodesPager("p1", nil).NextPage(ctx)
	if err != nil || len(nodes.Value) != 1 {
		t.Fatalf("nodes: %v", err)
	}
	if _, err := c.RebootNode(ctx, "p1", *nodes.Value[0].ID, nil); err != nil {
		t.Fatal(err)
	}
	waitNodes(t, c, "p1", 1, "idle")
	for _, id := range []string{"rerun", "once"} {
		if _, err := c.CreateTask(ctx, id, azbatch.CreateTaskContent{ID: to.Ptr("after"), CommandLine: to.Ptr("true")}, nil); err != nil {
			t.Fatal(err)
		}
		waitTask(t, c, id, "after", 20*time.Second)
	}
	if n := m.Count("prep-rerun"); n != 2 {
		t.Errorf("with rerunOnNodeRebootAfterSuccess the preparation task ran %d times around a reboot, want 2", n)
	}
	if n := m.Count("prep-once"); n != 1 {
		t.Errorf("without rerunOnNodeRebootAfterSuccess the preparation task ran %d times around a reboot, want 1", n)
	}

	// Bad job input.
	bad := map[string]azbatch.CreateJobContent{
		"release without preparation": {JobReleaseTask: &azbatch.JobReleaseTask{CommandLine: to.Ptr("true")}},
		"release over 15 minutes": {JobPreparationTask: &azbatch.JobPreparationTask{CommandLine: to.Ptr("true")},
			JobReleaseTask: &azbatch.JobReleaseTask{CommandLine: to.Ptr("true"), MaxWallClockTime: to.Ptr("PT1H")}},
		"manager without an id":         {JobManagerTask: &azbatch.JobManagerTask{CommandLine: to.Ptr("true")}},
		"manager with the prep's id":    {JobManagerTask: &azbatch.JobManagerTask{ID: to.Ptr("jobpreparation"), CommandLine: to.Ptr("true")}, JobPreparationTask: &azbatch.JobPreparationTask{CommandLine: to.Ptr("true")}},
		"bad onTaskFailure":             {OnTaskFailure: to.Ptr(azbatch.OnTaskFailure("sometimes"))},
		"preparation without a command": {JobPreparationTask: &azbatch.JobPreparationTask{CommandLine: to.Ptr("")}},
	}
	for name, in := range bad {
		in.ID, in.PoolInfo = to.Ptr("bad"), &azbatch.PoolInfo{PoolID: to.Ptr("p1")}
		_, err := c.CreateJob(ctx, in, nil)
		if err == nil {
			t.Errorf("%s: job created", name)
			continue
		}
		if msg := wantResponseError(t, err, 400, ""); msg == "" {
			t.Errorf("%s: no message", name)
		}
	}
	if _, err := c.GetJob(ctx, "bad", nil); err == nil {
		t.Errorf("a refused job exists")
	}
	_, err = c.CreateTask(ctx, "disables", azbatch.CreateTaskContent{ID: to.Ptr("y"), CommandLine: to.Ptr("true"),
		ExitConditions: &azbatch.ExitConditions{ExitCodes: []azbatch.ExitCodeMapping{exitCode(1, "", azbatch.DependencyAction("later"))}}}, nil)
	if msg := wantResponseError(t, err, 400, "InvalidPropertyValue"); !strings.Contains(msg, "dependencyAction") {
		t.Errorf("message %q does not name dependencyAction", msg)
	}
}

// TestJobPreparationAndRelease: the preparation task runs once on each node
// before the job's tasks there, the tasks see its directory, the release
// task runs on those nodes after the job ends; the status list shows both,
// page by page. A failing preparation task keeps the job's tasks off the
// node.
func TestJobPreparationAndRelease(t *testing.T) {
	ts := computeServer(t)
	mustBatchAccount(t, ts, "rg-jobprep", "jobprep1")
	c := dataClient(t, ts, "jobprep1")
	ctx := context.Background()
	mustPool(t, c, "p1", 2, 1)
	m := newMarkServer(t)
	node := "$AZ_BATCH_NODE_ID"
	prep := "echo ready-$AZ_BATCH_TASK_ID > $AZ_BATCH_TASK_WORKING_DIR/ready; sleep 0.5; " + m.Mark("prep-"+node)
	task := "curl -sf -X POST --data-binary @$AZ_BATCH_JOB_PREP_WORKING_DIR/ready " + m.URL + "/mark/task-" + node + "-$AZ_BATCH_TASK_ID; sleep 0.3"
	if _, err := c.CreateJob(ctx, azbatch.CreateJobContent{ID: to.Ptr("j1"), PoolInfo: &azbatch.PoolInfo{PoolID: to.Ptr("p1")},
		JobPreparationTask: &azbatch.JobPreparationTask{CommandLine: to.Ptr(prep)},
		JobReleaseTask:     &azbatch.JobReleaseTask{ID: to.Ptr("cleanup"), CommandLine: to.Ptr(m.Mark("release-" + node))}}, nil); err != nil {
		t.Fatal(err)
	}
	var g azbatch.TaskGroup
	for _, id := range []string{"a", "b", "c", "d", "e", "f"} {
		g.Value = append(g.Value, azbatch.CreateTaskContent{ID: to.Ptr(id), CommandLine: to.Ptr(task)})
	}
	if _, err := c.CreateTaskCollection(ctx, "j1", g, nil); err != nil {
		t.Fatal(err)
	}
	sawPreparing := false
	waitFor(t, 30*time.Second, "all tasks to complete", func() (bool, string) {
		done := 0
		for _, tk := range g.Value {
			s := *taskState(t, c, "j1", *tk.ID).State
			sawPreparing = sawPreparing || s == azbatch.TaskStatePreparing
			if s == azbatch.TaskStateCompleted {
				done++
			}
		}
		return done == len(g.Value), strings.Join(m.Marks(), ",")
	})
	marks := m.Marks()
	nodes := map[string]bool{}
	for _, tk := range g.Value {
		nid := *taskState(t, c, "j1", *tk.ID).NodeInfo.NodeID
		nodes[nid] = true
		name := "task-" + nid + "-" + *tk.ID
		if v, _ := m.Value(name); strings.TrimSpace(v) != "ready-jobpreparation" {
			t.Errorf("task %s read %q from the preparation task's working directory, want ready-jobpreparation", *tk.ID, v)
		}
		pi, ti := slices.Index(marks, "prep-"+nid), slices.Index(marks, name)
		if pi < 0 || ti < pi {
			t.Errorf("task %s ran on %s at mark %d, its preparation at %d: %v", *tk.ID, nid, ti, pi, marks)
		}
	}
	for nid := range nodes {
		if n := m.Count("prep-" + nid); n != 1 {
			t.Errorf("the preparation task ran %d times on %s, want once", n, nid)
		}
	}
	if len(nodes) != 2 {
		t.Logf("tasks ran on %d nodes", len(nodes))
	}
	if !sawPreparing {
		t.Logf("no task was seen in state preparing")
	}
	statuses := func() []azbatch.JobPreparationAndReleaseTaskStatus {
		var out []azbatch.JobPreparationAndReleaseTaskStatus
		p := c.NewListJobPreparationAndReleaseTaskStatusPager("j1", &azbatch.ListJobPreparationAndReleaseTaskStatusOptions{MaxResults: to.Ptr[int32](1)})
		for p.More() {
			page, err := p.NextPage(ctx)
			if err != nil {
				t.Fatalf("list status: %v", err)
			}
			if len(page.Value) > 1 {
				t.Errorf("page of %d with maxresults 1", len(page.Value))
			}
			out = append(out, page.Value...)
		}
		return out
	}
	st := statuses()
	if len(st) != len(nodes) {
		t.Fatalf("status lists %d nodes, tasks ran on %d", len(st), len(nodes))
	}
	for _, s := range st {
		p := s.JobPreparationTaskExecutionInfo
		if !nodes[*s.NodeID] || *s.PoolID != "p1" || *p.State != azbatch.JobPreparationTaskStateCompleted || *p.ExitCode != 0 ||
			*p.Result != azbatch.TaskExecutionResultSuccess || s.JobReleaseTaskExecutionInfo != nil || !strings.HasSuffix(*p.TaskRootDirectory, "/jobpreparation") {
			t.Errorf("status before the job ended: node %s pool %s prep %s exit %v result %v dir %v release %+v", *s.NodeID, *s.PoolID, *p.State, p.ExitCode, p.Result, p.TaskRootDirectory, s.JobReleaseTaskExecutionInfo)
		}
	}
	for nid := range nodes {
		if m.Count("release-"+nid) != 0 {
			t.Errorf("release task ran on %s before the job ended", nid)
		}
	}
	if _, err := c.TerminateJob(ctx, "j1", nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "release tasks on every node that ran the preparation task", func() (bool, string) {
		for nid := range nodes {
			if m.Count("release-"+nid) != 1 {
				return false, strings.Join(m.Marks(), ",")
			}
		}
		for _, s := range statuses() {
			if r := s.JobReleaseTaskExecutionInfo; r == nil || *r.State != azbatch.JobReleaseTaskStateCompleted {
				return false, "release not completed in the status list"
			}
		}
		return true, ""
	})
	// The job was terminating until its release tasks ended.
	j1 := waitJob(t, c, "j1", azbatch.JobStateCompleted)
	if *j1.PreviousState != azbatch.JobStateTerminating {
		t.Errorf("j1 went from %s to completed, want terminating", *j1.PreviousState)
	}
	for _, s := range statuses() {
		if r := s.JobReleaseTaskExecutionInfo; *r.ExitCode != 0 || !strings.HasSuffix(*r.TaskRootDirectory, "/cleanup") || r.EndTime.After(*j1.ExecutionInfo.EndTime) {
			t.Errorf("release on %s: exit %v dir %v ended %v, after the job at %v", *s.NodeID, r.ExitCode, r.TaskRootDirectory, r.EndTime, j1.ExecutionInfo.EndTime)
		}
	}

	// A failing preparation task (waitForSuccess by default) keeps the
	// job's task off every node it failed on.
	if _, err := c.CreateJob(ctx, azbatch.CreateJobContent{ID: to.Ptr("j2"), PoolInfo: &azbatch.PoolInfo{PoolID: to.Ptr("p1")},
		JobPreparationTask: &azbatch.JobPreparationTask{CommandLine: to.Ptr("exit 3")}}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateTask(ctx, "j2", azbatch.CreateTaskContent{ID: to.Ptr("never"), CommandLine: to.Ptr(m.Mark("never"))}, nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "the preparation task to fail on both nodes", func() (bool, string) {
		var got []string
		p := c.NewListJobPreparationAndReleaseTaskStatusPager("j2", nil)
		for p.More() {
			page, err := p.NextPage(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range page.Value {
				i := s.JobPreparationTaskExecutionInfo
				if *i.State == azbatch.JobPreparationTaskStateCompleted && *i.ExitCode == 3 && i.FailureInfo != nil && *i.Result == azbatch.TaskExecutionResultFailure {
					got = append(got, *s.NodeID)
				}
			}
		}
		return len(got) == 2, strings.Join(got, ",")
	})
	time.Sleep(500 * time.Millisecond)
	if tk := taskState(t, c, "j2", "never"); *tk.State != azbatch.TaskStateActive || m.Count("never") != 0 {
		t.Errorf("task of a job whose preparation failed everywhere: %s, ran %d times; want active, never run", *tk.State, m.Count("never"))
	}
	// $filter on the status list; an unknown property is refused.
	one := st[0].NodeID
	fp, err := c.NewListJobPreparationAndReleaseTaskStatusPager("j2", &azbatch.ListJobPreparationAndReleaseTaskStatusOptions{
		Filter: to.Ptr("nodeId eq '" + *one + "' and jobPreparationTaskExecutionInfo/result eq 'failure'")}).NextPage(ctx)
	if err != nil || len(fp.Value) != 1 || *fp.Value[0].NodeID != *one {
		t.Errorf("filtered status list: %v %v", fp.Value, err)
	}
	_, err = c.NewListJobPreparationAndReleaseTaskStatusPager("j2", &azbatch.ListJobPreparationAndReleaseTaskStatusOptions{Filter: to.Ptr("commandLine eq 'x'")}).NextPage(ctx)
	wantResponseError(t, err, 400, "")

	// Without waitForSuccess the task does not wait for the preparation
	// task; deleting the job runs its release task too.
	if _, err := c.CreateJob(ctx, azbatch.CreateJobContent{ID: to.Ptr("j4"), PoolInfo: &azbatch.PoolInfo{PoolID: to.Ptr("p1")},
		JobPreparationTask: &azbatch.JobPreparationTask{CommandLine: to.Ptr("sleep 1.5; " + m.Mark("prep4")), WaitForSuccess: to.Ptr(false)},
		JobReleaseTask:     &azbatch.JobReleaseTask{CommandLine: to.Ptr(m.Mark("release4"))}}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateTask(ctx, "j4", azbatch.CreateTaskContent{ID: to.Ptr("quick"), CommandLine: to.Ptr(m.Mark("quick4"))}, nil); err != nil {
		t.Fatal(err)
	}
	waitTask(t, c, "j4", "quick", 20*time.Second)
	waitFor(t, 20*time.Second, "j4's preparation task", func() (bool, string) { return m.Count("prep4") == 1, strings.Join(m.Marks(), ",") })
	if marks := m.Marks(); slices.Index(marks, "quick4") > slices.Index(marks, "prep4") {
		t.Errorf("without waitForSuccess the task waited for the preparation task: %v", marks)
	}
	if _, err := c.DeleteJob(ctx, "j4", nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "the release task of the deleted job", func() (bool, string) { return m.Count("release4") == 1, strings.Join(m.Marks(), ",") })

	// A task may not take the preparation task's id; a job without one
	// has no status list.
	_, err = c.CreateTask(ctx, "j2", azbatch.CreateTaskContent{ID: to.Ptr("jobpreparation"), CommandLine: to.Ptr("true")}, nil)
	wantResponseError(t, err, 409, "TaskIdSameAsJobPreparationTask")
	if _, err := c.CreateJob(ctx, azbatch.CreateJobContent{ID: to.Ptr("j3"), PoolInfo: &azbatch.PoolInfo{PoolID: to.Ptr("p1")}}, nil); err != nil {
		t.Fatal(err)
	}
	_, err = c.NewListJobPreparationAndReleaseTaskStatusPager("j3", nil).NextPage(ctx)
	wantResponseError(t, err, 409, "JobPreparationTaskNotSpecified")
}
