package compat_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/batch/azbatch"

	"custody/batch"
	"custody/server"
	"custody/server/servertest"
)

// scheduleServer starts a server whose job schedules accept intervals of a
// second (Azure's minimum is a minute), so a test sees several runs.
func scheduleServer(t *testing.T, database, dir string) *servertest.TestServer {
	t.Helper()
	return servertest.New(t, func(c *server.Config) {
		c.TestJobScheduleMinimum = time.Second
		c.DisableLocalNodes = true
		c.Database = database
		if dir != "" {
			c.DataDir = dir
		}
	})
}

// scheduleJobs returns the ids of the jobs a schedule created, through
// GET /jobschedules/{id}/jobs, sorted by number.
func scheduleJobs(t *testing.T, c *azbatch.Client, id string) []azbatch.Job {
	t.Helper()
	var out []azbatch.Job
	p := c.NewListJobsFromSchedulePager(id, nil)
	for p.More() {
		page, err := p.NextPage(context.Background())
		if err != nil {
			t.Fatalf("list the jobs of schedule %s: %v", id, err)
		}
		out = append(out, page.Value...)
	}
	sort.Slice(out, func(i, j int) bool {
		var a, b int
		fmt.Sscanf((*out[i].ID)[strings.LastIndex(*out[i].ID, "-")+1:], "%d", &a)
		fmt.Sscanf((*out[j].ID)[strings.LastIndex(*out[j].ID, "-")+1:], "%d", &b)
		return a < b
	})
	return out
}

func jobIDs(js []azbatch.Job) string {
	ids := make([]string, len(js))
	for i, j := range js {
		ids[i] = *j.ID
	}
	return strings.Join(ids, ",")
}

func getSchedule(t *testing.T, c *azbatch.Client, id string) azbatch.JobSchedule {
	t.Helper()
	r, err := c.GetJobSchedule(context.Background(), id, nil)
	if err != nil {
		t.Fatalf("get job schedule %s: %v", id, err)
	}
	return r.JobSchedule
}

// waitJobs waits until schedule id has created exactly n jobs.
func waitJobs(t *testing.T, c *azbatch.Client, id string, n int, d time.Duration) []azbatch.Job {
	t.Helper()
	var js []azbatch.Job
	waitFor(t, d, fmt.Sprintf("%d jobs of schedule %s", n, id), func() (bool, string) {
		js = scheduleJobs(t, c, id)
		return len(js) == n, jobIDs(js)
	})
	return js
}

func terminateJob(t *testing.T, c *azbatch.Client, id string) {
	t.Helper()
	if _, err := c.TerminateJob(context.Background(), id, nil); err != nil {
		t.Fatalf("terminate job %s: %v", id, err)
	}
}

// TestJobScheduleLifecycle drives a recurring schedule with the azbatch
// client through every operation: jobs named {id}:job-{n} on time, one
// active job at a time, disable, enable, patch, replace, terminate and
// delete with their state transitions.
func TestJobScheduleLifecycle(t *testing.T) {
	ts := scheduleServer(t, "", "")
	mustBatchAccount(t, ts, "rg-sched", "schedacct")
	c := dataClient(t, ts, "schedacct")
	ctx := context.Background()

	created := time.Now()
	_, err := c.CreateJobSchedule(ctx, azbatch.CreateJobScheduleContent{
		ID: to.Ptr("hourly"), DisplayName: to.Ptr("every three seconds"),
		Schedule: &azbatch.JobScheduleConfiguration{RecurrenceInterval: to.Ptr("PT3S")},
		JobSpecification: &azbatch.JobSpecification{PoolInfo: &azbatch.PoolInfo{PoolID: to.Ptr("p1")}, Priority: to.Ptr[int32](7),
			Metadata: []azbatch.MetadataItem{meta("kind", "scheduled")}},
		Metadata: []azbatch.MetadataItem{meta("owner", "ops")},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	// HEAD answers 200 with the schedule's ETag, or 404 (no error).
	exists := func(id string) bool {
		ex, err := c.JobScheduleExists(ctx, id, nil)
		if err != nil {
			t.Fatalf("exists %s: %v", id, err)
		}
		return ex.ETag != nil
	}
	if !exists("HOURLY") || exists("nope") {
		t.Fatalf("exists: HOURLY %v, nope %v", exists("HOURLY"), exists("nope"))
	}

	// The first job at once, named as Azure names it, with the spec.
	js := waitJobs(t, c, "hourly", 1, 3*time.Second)
	j1 := js[0]
	if *j1.ID != "hourly:job-1" || *j1.State != azbatch.JobStateActive || *j1.PoolInfo.PoolID != "p1" || *j1.Priority != 7 ||
		len(j1.Metadata) != 1 || *j1.Metadata[0].Value != "scheduled" {
		t.Fatalf("first job: %s", mustJSON(j1))
	}
	if d := j1.CreationTime.Sub(created); d > 2*time.Second {
		t.Errorf("the first job was created %s after the schedule, want at once", d)
	}
	s := getSchedule(t, c, "hourly")
	if *s.State != azbatch.JobScheduleStateActive || *s.DisplayName != "every three seconds" || *s.Schedule.RecurrenceInterval != "PT3S" ||
		s.ExecutionInfo == nil || s.ExecutionInfo.RecentJob == nil || *s.ExecutionInfo.RecentJob.ID != "hourly:job-1" ||
		!strings.HasSuffix(*s.ExecutionInfo.RecentJob.URL, "/jobs/hourly:job-1") || s.ExecutionInfo.NextRunTime == nil ||
		s.ExecutionInfo.EndTime != nil || len(s.Metadata) != 1 || *s.JobSpecification.PoolInfo.PoolID != "p1" {
		t.Fatalf("schedule after its first run: %s", mustJSON(s))
	}
	if next := s.ExecutionInfo.NextRunTime.Sub(*j1.CreationTime); next < 2*time.Second || next > 4*time.Second {
		t.Errorf("nextRunTime is %s after the first job, want the recurrence interval (3 s)", next)
	}

	// One active job at a time: the second run waits for the first job.
	time.Sleep(4 * time.Second)
	if js := scheduleJobs(t, c, "hourly"); len(js) != 1 {
		t.Fatalf("while job-1 is active the schedule created %s, want job-1 only", jobIDs(js))
	}
	terminateJob(t, c, "hourly:job-1")
	ended := time.Now()
	js = waitJobs(t, c, "hourly", 2, 3*time.Second)
	if *js[1].ID != "hourly:job-2" || js[1].CreationTime.Sub(ended) > 2*time.Second {
		t.Fatalf("the waiting run: %s created %v, job-1 ended %v", *js[1].ID, js[1].CreationTime, ended)
	}

	// Disabled: no job, even when one falls due; enable resumes.
	if _, err := c.DisableJobSchedule(ctx, "hourly", nil); err != nil {
		t.Fatal(err)
	}
	if s := getSchedule(t, c, "hourly"); *s.State != azbatch.JobScheduleStateDisabled || *s.PreviousState != azbatch.JobScheduleStateActive {
		t.Fatalf("after disable: %s", mustJSON(s))
	}
	terminateJob(t, c, "hourly:job-2")
	time.Sleep(4 * time.Second)
	if js := scheduleJobs(t, c, "hourly"); len(js) != 2 {
		t.Fatalf("a disabled schedule created %s", jobIDs(js))
	}
	if _, err := c.EnableJobSchedule(ctx, "hourly", nil); err != nil {
		t.Fatal(err)
	}
	s = getSchedule(t, c, "hourly")
	if *s.State != azbatch.JobScheduleStateActive || s.ExecutionInfo.NextRunTime == nil || s.ExecutionInfo.NextRunTime.Before(time.Now().Add(-time.Second)) {
		t.Fatalf("after enable: %s", mustJSON(s))
	}
	js = waitJobs(t, c, "hourly", 3, 5*time.Second)

	// Patch keeps what it does not name; replace resets it.
	if _, err := c.UpdateJobSchedule(ctx, "hourly", azbatch.UpdateJobScheduleContent{Metadata: []azbatch.MetadataItem{meta("owner", "dev")}}, nil); err != nil {
		t.Fatal(err)
	}
	s = getSchedule(t, c, "hourly")
	if *s.Metadata[0].Value != "dev" || *s.Schedule.RecurrenceInterval != "PT3S" || *s.JobSpecification.Priority != 7 {
		t.Fatalf("after patch: %s", mustJSON(s))
	}
	etag := *s.ETag
	if _, err := c.ReplaceJobSchedule(ctx, "hourly", azbatch.JobSchedule{
		JobSpecification: &azbatch.JobSpecification{PoolInfo: &azbatch.PoolInfo{PoolID: to.Ptr("p2")}},
		Schedule:         &azbatch.JobScheduleConfiguration{RecurrenceInterval: to.Ptr("PT1H")},
	}, &azbatch.ReplaceJobScheduleOptions{IfMatch: s.ETag}); err != nil {
		t.Fatal(err)
	}
	s = getSchedule(t, c, "hourly")
	if len(s.Metadata) != 0 || *s.JobSpecification.PoolInfo.PoolID != "p2" || s.JobSpecification.Priority != nil || *s.Schedule.RecurrenceInterval != "PT1H" ||
		*s.ETag == etag || s.ExecutionInfo.NextRunTime == nil || s.ExecutionInfo.NextRunTime.Before(time.Now().Add(50*time.Minute)) {
		t.Fatalf("after replace: %s", mustJSON(s))
	}
	_, err = c.UpdateJobSchedule(ctx, "hourly", azbatch.UpdateJobScheduleContent{Metadata: []azbatch.MetadataItem{}},
		&azbatch.UpdateJobScheduleOptions{IfMatch: to.Ptr(azcore.ETag(etag))})
	wantSDKError(t, "patch with a stale etag", err, http.StatusPreconditionFailed, "ConditionNotMet")
	// The job running meanwhile keeps the spec it was created with.
	if j, err := c.GetJob(ctx, "hourly:job-3", nil); err != nil || *j.PoolInfo.PoolID != "p1" {
		t.Fatalf("job-3 after the schedule's replace: %v %v", err, j.PoolInfo)
	}

	// Terminate: the active job is terminated and the schedule completes.
	if _, err := c.TerminateJobSchedule(ctx, "hourly", nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "schedule completed", func() (bool, string) {
		s = getSchedule(t, c, "hourly")
		return *s.State == azbatch.JobScheduleStateCompleted, string(*s.State)
	})
	if s.ExecutionInfo.EndTime == nil || s.ExecutionInfo.NextRunTime != nil {
		t.Errorf("completed schedule's executionInfo: %s", mustJSON(s.ExecutionInfo))
	}
	if j, err := c.GetJob(ctx, "hourly:job-3", nil); err != nil || *j.State != azbatch.JobStateCompleted {
		t.Fatalf("job-3 after the schedule's terminate: %v %v", err, j.State)
	}
	_, err = c.DisableJobSchedule(ctx, "hourly", nil)
	wantSDKError(t, "disable a completed schedule", err, http.StatusConflict, "JobScheduleCompleted")
	_, err = c.CreateJob(ctx, azbatch.CreateJobContent{ID: to.Ptr("hourly"), PoolInfo: &azbatch.PoolInfo{PoolID: to.Ptr("p1")}}, nil)
	wantSDKError(t, "a job with a schedule's id", err, http.StatusConflict, "JobScheduleWithSameIdExists")

	// The schedules list, with $filter and $select.
	if _, err := c.CreateJobSchedule(ctx, azbatch.CreateJobScheduleContent{ID: to.Ptr("later"),
		Schedule:         &azbatch.JobScheduleConfiguration{DoNotRunUntil: to.Ptr(time.Now().Add(time.Hour))},
		JobSpecification: &azbatch.JobSpecification{PoolInfo: &azbatch.PoolInfo{PoolID: to.Ptr("p1")}}}, nil); err != nil {
		t.Fatal(err)
	}
	list := func(filter string) []string {
		var ids []string
		p := c.NewListJobSchedulesPager(&azbatch.ListJobSchedulesOptions{Filter: to.Ptr(filter), SelectParam: []string{"id", "state"}, MaxResults: to.Ptr[int32](1)})
		for p.More() {
			page, err := p.NextPage(ctx)
			if err != nil {
				t.Fatalf("list %q: %v", filter, err)
			}
			for _, s := range page.Value {
				if s.JobSpecification != nil {
					t.Errorf("$select=id,state returned jobSpecification")
				}
				ids = append(ids, *s.ID+"="+string(*s.State))
			}
		}
		return ids
	}
	if got := strings.Join(list(""), " "); got != "hourly=completed later=active" {
		t.Errorf("list: %s", got)
	}
	if got := strings.Join(list("state eq 'active'"), " "); got != "later=active" {
		t.Errorf("list state eq 'active': %s", got)
	}
	if jobs := scheduleJobs(t, c, "later"); len(jobs) != 0 {
		t.Errorf("a schedule not due yet created %s", jobIDs(jobs))
	}

	// Delete: the schedule and its jobs go.
	if _, err := c.DeleteJobSchedule(ctx, "hourly", nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "schedule deleted", func() (bool, string) { return !exists("hourly"), "" })
	for _, id := range []string{"hourly:job-1", "hourly:job-2", "hourly:job-3"} {
		_, err := c.GetJob(ctx, id, nil)
		wantSDKError(t, "get "+id+" after its schedule's delete", err, http.StatusNotFound, "JobNotFound")
	}
	_, err = c.GetJobSchedule(ctx, "hourly", nil)
	wantSDKError(t, "get a deleted schedule", err, http.StatusNotFound, "JobScheduleNotFound")
	_, err = c.NewListJobsFromSchedulePager("hourly", nil).NextPage(ctx)
	wantSDKError(t, "jobs of a deleted schedule", err, http.StatusNotFound, "JobScheduleNotFound")
}

// TestJobScheduleErrors: bad input answers Azure's error shape with the
// property named, and nothing is created.
func TestJobScheduleErrors(t *testing.T) {
	ts := servertest.New(t, func(c *server.Config) { c.DisableLocalNodes = true })
	mustBatchAccount(t, ts, "rg-schederr", "schederr")
	tok := batchToken(t, ts, ts.Admin.ClientID, ts.Admin.ClientSecret)
	spec := `"jobSpecification":{"poolInfo":{"poolId":"p1"}}`
	for _, tc := range []struct {
		body, code, target string
	}{
		{`{"id":"s1","schedule":{"recurrenceInterval":"PT30S"},` + spec + `}`, "InvalidPropertyValue", "schedule.recurrenceInterval"},
		{`{"id":"s1","schedule":{"startWindow":"PT59S"},` + spec + `}`, "InvalidPropertyValue", "schedule.startWindow"},
		{`{"id":"s1","schedule":{"recurrenceInterval":"every hour"},` + spec + `}`, "InvalidPropertyValue", "schedule.recurrenceInterval"},
		{`{"id":"s1","schedule":{"recurrenceInterval":5},` + spec + `}`, "InvalidRequestBody", ""},
		{`{"id":"s1","schedule":{"doNotRunUntil":"tomorrow"},` + spec + `}`, "InvalidRequestBody", ""},
		{`{"id":"s1","schedule":{}}`, "MissingRequiredProperty", "jobSpecification"},
		{`{"id":"s1",` + spec + `}`, "MissingRequiredProperty", "schedule"},
		{`{"id":"s1","schedule":{},"jobSpecification":{}}`, "MissingRequiredProperty", "jobSpecification.poolInfo.poolId"},
		{`{"id":"s:1","schedule":{},` + spec + `}`, "InvalidPropertyValue", "id"},
		{`{"id":"s1","schedule":{},"jobSpecification":{"poolInfo":{"poolId":"p1"},"priority":5000}}`, "InvalidPropertyValue", "jobSpecification.priority"},
	} {
		r := batchRaw(t, ts, tok, "POST", "schederr", "/jobschedules?api-version=2024-07-01.20.0", tc.body)
		e := wantBatchError(t, r, http.StatusBadRequest, tc.code)
		if tc.target != "" && !strings.Contains(string(r.Body), `"value":"`+tc.target+`"`) {
			t.Errorf("%s: the error does not name %s: %s", tc.body, tc.target, r.Body)
		}
		_ = e
	}
	r := batchRaw(t, ts, tok, "GET", "schederr", "/jobschedules?api-version=2024-07-01.20.0", "")
	if r.Status != http.StatusOK || strings.Contains(string(r.Body), `"id"`) {
		t.Fatalf("a refused schedule was stored: %d %s", r.Status, r.Body)
	}
	// Azure's minute is accepted on a server without the test option.
	r = batchRaw(t, ts, tok, "POST", "schederr", "/jobschedules?api-version=2024-07-01.20.0",
		`{"id":"s1","schedule":{"recurrenceInterval":"PT1M","startWindow":"PT1M","doNotRunUntil":"2099-01-01T00:00:00Z"},`+spec+`}`)
	if r.Status != http.StatusCreated {
		t.Fatalf("a one-minute schedule: %d %s", r.Status, r.Body)
	}
	r = batchRaw(t, ts, tok, "POST", "schederr", "/jobschedules?api-version=2024-07-01.20.0", `{"id":"S1","schedule":{},`+spec+`}`)
	wantBatchError(t, r, http.StatusConflict, "JobScheduleExists")
	r = batchRaw(t, ts, tok, "POST", "schederr", "/jobs?api-version=2024-07-01.20.0", `{"id":"j1","poolInfo":{"poolId":"p1"}}`)
	if r.Status != http.StatusCreated {
		t.Fatalf("create job: %d %s", r.Status, r.Body)
	}
	r = batchRaw(t, ts, tok, "POST", "schederr", "/jobschedules?api-version=2024-07-01.20.0", `{"id":"j1","schedule":{},`+spec+`}`)
	wantBatchError(t, r, http.StatusConflict, "JobWithSameIdExists")
	r = batchRaw(t, ts, tok, "PATCH", "schederr", "/jobschedules/s1?api-version=2024-07-01.20.0", `{"schedule":{"recurrenceInterval":"PT1S"}}`)
	wantBatchError(t, r, http.StatusBadRequest, "InvalidPropertyValue")
	r = batchRaw(t, ts, tok, "POST", "schederr", "/jobschedules/nope/terminate?api-version=2024-07-01.20.0", "")
	wantBatchError(t, r, http.StatusNotFound, "JobScheduleNotFound")
	r = batchRaw(t, ts, tok, "PUT", "schederr", "/jobschedules/s1?api-version=2024-07-01.20.0", `{"schedule":{}}`)
	wantBatchError(t, r, http.StatusBadRequest, "MissingRequiredProperty")
}

// TestJobScheduleSurvivesRestart stops the server between runs: a run
// that fell due while it was down runs once at start-up (not once per
// missed occurrence), a run whose startWindow passed meanwhile is lost, and
// the schedule goes on at its interval afterwards.
func TestJobScheduleSurvivesRestart(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) { testScheduleRestart(t, "") })
	t.Run("postgres", func(t *testing.T) { testScheduleRestart(t, MustPostgresDatabase(t)) })
}

func testScheduleRestart(t *testing.T, database string) {
	dir := t.TempDir()
	ts := scheduleServer(t, database, dir)
	mustBatchAccount(t, ts, "rg-restart", "schedrestart")
	c := dataClient(t, ts, "schedrestart")
	ctx := context.Background()
	spec := &azbatch.JobSpecification{PoolInfo: &azbatch.PoolInfo{PoolID: to.Ptr("p1")}}
	if _, err := c.CreateJobSchedule(ctx, azbatch.CreateJobScheduleContent{ID: to.Ptr("every2"),
		Schedule: &azbatch.JobScheduleConfiguration{RecurrenceInterval: to.Ptr("PT2S")}, JobSpecification: spec}, nil); err != nil {
		t.Fatal(err)
	}
	waitJobs(t, c, "every2", 1, 3*time.Second)
	terminateJob(t, c, "every2:job-1")
	waitJobs(t, c, "every2", 2, 4*time.Second)
	terminateJob(t, c, "every2:job-2")
	// Two schedules that fall due while the server is down: one with a
	// start window that passes before it is back, one without.
	due := time.Now().Add(3 * time.Second)
	for _, s := range []struct {
		id     string
		window *string
	}{{"window", to.Ptr("PT1S")}, {"nowindow", nil}} {
		if _, err := c.CreateJobSchedule(ctx, azbatch.CreateJobScheduleContent{ID: to.Ptr(s.id),
			Schedule: &azbatch.JobScheduleConfiguration{DoNotRunUntil: &due, StartWindow: s.window}, JobSpecification: spec}, nil); err != nil {
			t.Fatal(err)
		}
	}
	ts.Close()
	stopped := time.Now()
	if time.Now().After(due) {
		t.Fatalf("the server took until %s to stop, after the runs due at %s", stopped, due)
	}
	time.Sleep(time.Until(due.Add(5 * time.Second))) // every2 misses at least two occurrences

	ts2 := scheduleServer(t, database, dir)
	c2 := dataClient(t, ts2, "schedrestart")
	started := time.Now()
	js := waitJobs(t, c2, "every2", 3, 4*time.Second)
	if js[2].CreationTime.Before(stopped) {
		t.Fatalf("job-3 was created at %v, before the restart", js[2].CreationTime)
	}
	waitJobs(t, c2, "nowindow", 1, 3*time.Second)
	// Nothing more while job-3 and nowindow:job-1 are active: the missed
	// occurrences were not run one after the other.
	time.Sleep(2500 * time.Millisecond)
	if js := scheduleJobs(t, c2, "every2"); len(js) != 3 {
		t.Fatalf("after the restart every2 created %s; want one job for the missed occurrences", jobIDs(js))
	}
	if js := scheduleJobs(t, c2, "window"); len(js) != 0 {
		t.Fatalf("the schedule whose start window passed while the server was down created %s", jobIDs(js))
	}
	if s := getSchedule(t, c2, "window"); *s.State != azbatch.JobScheduleStateCompleted || s.ExecutionInfo.RecentJob != nil {
		t.Errorf("a schedule that lost its only run: %s", mustJSON(s))
	}
	if s := getSchedule(t, c2, "nowindow"); *s.State != azbatch.JobScheduleStateActive || *s.ExecutionInfo.RecentJob.ID != "nowindow:job-1" {
		t.Errorf("a run-once schedule with its job active: %s", mustJSON(s))
	}
	// The run-once schedule completes when its job does.
	terminateJob(t, c2, "nowindow:job-1")
	waitFor(t, 4*time.Second, "nowindow completed", func() (bool, string) {
		s := getSchedule(t, c2, "nowindow")
		return *s.State == azbatch.JobScheduleStateCompleted, string(*s.State)
	})
	// every2 goes on at its interval.
	terminateJob(t, c2, "every2:job-3")
	js = waitJobs(t, c2, "every2", 4, 4*time.Second)
	if *js[3].ID != "every2:job-4" {
		t.Fatalf("after job-3: %s", jobIDs(js))
	}
	t.Logf("restart: every2 job-3 created %s after start-up", js[2].CreationTime.Sub(started))
}

// TestJobScheduleJobsRunTasks: a scheduled job's tasks run on a real node
// of its pool; with onAllTasksComplete terminatejob the job completes when
// they have, and the next run creates the next job.
func TestJobScheduleJobsRunTasks(t *testing.T) {
	t.Setenv(agentEnv, "1")
	ts := servertest.New(t, func(c *server.Config) {
		c.TestJobScheduleMinimum = time.Second
		c.NodeCommand = []string{os.Args[0], "node"}
		c.NodePoll = time.Second
	})
	mustBatchAccount(t, ts, "rg-schedrun", "schedrun")
	c := dataClient(t, ts, "schedrun")
	ctx := context.Background()
	mustPool(t, c, "p1", 1, 1)
	if _, err := c.CreateJobSchedule(ctx, azbatch.CreateJobScheduleContent{ID: to.Ptr("sr"),
		Schedule: &azbatch.JobScheduleConfiguration{RecurrenceInterval: to.Ptr("PT2S")},
		JobSpecification: &azbatch.JobSpecification{PoolInfo: &azbatch.PoolInfo{PoolID: to.Ptr("p1")},
			OnAllTasksComplete:        to.Ptr(azbatch.OnAllTasksCompleteTerminateJob),
			CommonEnvironmentSettings: []azbatch.EnvironmentSetting{env("RUN_OF", "schedule")}},
	}, nil); err != nil {
		t.Fatal(err)
	}
	waitJobs(t, c, "sr", 1, 3*time.Second)
	if _, err := c.CreateTask(ctx, "sr:job-1", azbatch.CreateTaskContent{ID: to.Ptr("t1"),
		CommandLine: to.Ptr(`/bin/sh -c 'echo "$RUN_OF $AZ_BATCH_JOB_ID"'`)}, nil); err != nil {
		t.Fatal(err)
	}
	tk := waitTask(t, c, "sr:job-1", "t1", 30*time.Second)
	if *tk.ExecutionInfo.ExitCode != 0 {
		t.Fatalf("task: %s", mustJSON(tk.ExecutionInfo))
	}
	if out := readTaskFile(t, c, "sr:job-1", "t1", "stdout.txt"); strings.TrimSpace(out) != "schedule sr:job-1" {
		t.Errorf("stdout of the scheduled job's task = %q", out)
	}
	waitFor(t, 10*time.Second, "job-1 completed and job-2 created", func() (bool, string) {
		js := scheduleJobs(t, c, "sr")
		return len(js) == 2 && *js[0].State == azbatch.JobStateCompleted, jobIDs(js)
	})
}

// TestJobScheduleCanaryAndLock: what a customer writes in a schedule (and
// in its auto pool) is in neither the database files nor the log; a locked
// account refuses schedule calls and creates no jobs; deleting the account
// leaves no schedule or auto pool row.
func TestJobScheduleCanaryAndLock(t *testing.T) {
	logs := &syncBuffer{}
	ts := servertest.New(t, func(c *server.Config) {
		c.Logger = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
		c.TestJobScheduleMinimum = time.Second
		c.DisableLocalNodes = true
	})
	ctx := context.Background()
	a := mustBatchAccount(t, ts, "rg-schedcanary", "schedcanary")
	c := dataClient(t, ts, "schedcanary")
	cn := func(field string) string { return "zq9" + field + "Kx7" }
	if _, err := c.CreateJobSchedule(ctx, azbatch.CreateJobScheduleContent{ID: to.Ptr("canary"), DisplayName: to.Ptr(cn("SchedDisplay")),
		Metadata: []azbatch.MetadataItem{meta("k", cn("SchedMeta"))},
		Schedule: &azbatch.JobScheduleConfiguration{RecurrenceInterval: to.Ptr("PT2S")},
		JobSpecification: &azbatch.JobSpecification{DisplayName: to.Ptr(cn("JobDisplay")),
			CommonEnvironmentSettings: []azbatch.EnvironmentSetting{env("E", cn("JobEnv"))},
			PoolInfo: &azbatch.PoolInfo{AutoPoolSpecification: &azbatch.AutoPoolSpecification{PoolLifetimeOption: to.Ptr(azbatch.PoolLifetimeOptionJobSchedule),
				Pool: &azbatch.PoolSpecification{VMSize: to.Ptr("standard_d2s_v3"), Metadata: []azbatch.MetadataItem{meta("p", cn("PoolMeta"))},
					StartTask: &azbatch.StartTask{CommandLine: to.Ptr(cn("StartCmd"))}}}}},
	}, nil); err != nil {
		t.Fatal(err)
	}
	js := waitJobs(t, c, "canary", 1, 3*time.Second)
	if *js[0].DisplayName != cn("JobDisplay") {
		t.Fatalf("the scheduled job does not read back: %s", mustJSON(js[0]))
	}
	s := getSchedule(t, c, "canary")
	if *s.DisplayName != cn("SchedDisplay") || *s.JobSpecification.PoolInfo.AutoPoolSpecification.Pool.StartTask.CommandLine != cn("StartCmd") {
		t.Fatalf("the schedule does not read back: %s", mustJSON(s))
	}
	var files []byte
	for _, f := range []string{"custody.db", "custody.db-wal"} {
		b, err := os.ReadFile(filepath.Join(ts.DataDir(), f))
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		files = append(files, b...)
		for _, h := range [][]byte{b, logs.Bytes()} {
			for _, field := range []string{"SchedDisplay", "SchedMeta", "JobDisplay", "JobEnv", "PoolMeta", "StartCmd"} {
				if bytes.Contains(h, []byte(cn(field))) {
					t.Errorf("%s or the log contains the %s canary", f, field)
				}
			}
		}
	}

	if !bytes.Contains(files, []byte("canary:job-1")) {
		t.Fatal("the database files do not hold the plain job id; the scan reads the wrong files")
	}

	// Locked: every schedule call is refused, and no job is created.
	terminateJob(t, c, "canary:job-1")
	k := a.Key
	k.State, k.Reason, k.Since = batch.KeyInaccessible, "the key was disabled", time.Now()
	if err := ts.Batch.Accounts.UpdateKeyState(ctx, "schedcanary", k); err != nil {
		t.Fatal(err)
	}
	for name, call := range map[string]func() error{
		"get":       func() error { _, err := c.GetJobSchedule(ctx, "canary", nil); return err },
		"list":      func() error { _, err := c.NewListJobSchedulesPager(nil).NextPage(ctx); return err },
		"jobs":      func() error { _, err := c.NewListJobsFromSchedulePager("canary", nil).NextPage(ctx); return err },
		"disable":   func() error { _, err := c.DisableJobSchedule(ctx, "canary", nil); return err },
		"terminate": func() error { _, err := c.TerminateJobSchedule(ctx, "canary", nil); return err },
		"delete":    func() error { _, err := c.DeleteJobSchedule(ctx, "canary", nil); return err },
		"create": func() error {
			_, err := c.CreateJobSchedule(ctx, azbatch.CreateJobScheduleContent{ID: to.Ptr("s2"), Schedule: &azbatch.JobScheduleConfiguration{},
				JobSpecification: &azbatch.JobSpecification{PoolInfo: &azbatch.PoolInfo{PoolID: to.Ptr("p")}}}, nil)
			return err
		},
	} {
		wantSDKError(t, "locked: "+name, call(), http.StatusConflict, "AccountKeyInaccessible")
	}
	time.Sleep(3 * time.Second)
	var n int
	if err := ts.DB.SQL().QueryRow(`SELECT COUNT(*) FROM batch_jobs WHERE account_key = 'schedcanary'`).Scan(&n); err != nil || n != 1 {
		t.Errorf("a locked account's schedule: %d jobs (%v), want job-1 only", n, err)
	}
	if err := ts.Batch.Delete(ctx, "schedcanary"); err != nil {
		t.Fatalf("delete locked account: %v", err)
	}
	for _, table := range []string{"batch_job_schedules", "batch_auto_pools", "batch_jobs"} {
		if err := ts.DB.SQL().QueryRow(`SELECT COUNT(*) FROM ` + table).Scan(&n); err != nil || n != 0 {
			t.Errorf("%s has %d rows after the account was deleted (%v)", table, n, err)
		}
	}
}
