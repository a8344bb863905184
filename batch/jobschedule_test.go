package batch_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"custody"
	"custody/batch"
	"custody/sqlstore"
	"custody/sqlstore/sqlstoretest"
)

// lockableKeys are fakeKeys whose accounts can be locked while the
// runner reads them.
type lockableKeys struct {
	mu     sync.Mutex
	keys   fakeKeys
	locked bool
}

func (k *lockableKeys) DEK(ctx context.Context, name string) (*batch.Account, *batch.DEK, error) {
	k.mu.Lock()
	locked := k.locked
	k.mu.Unlock()
	if locked {
		return nil, nil, custody.Errorf(custody.KindConflict, "AccountKeyInaccessible", "locked")
	}
	return k.keys.DEK(ctx, name)
}

func (k *lockableKeys) lock(v bool) {
	k.mu.Lock()
	k.locked = v
	k.mu.Unlock()
}

// crashingSchedules fails the next schedule update after a job was
// created, as a crash between the two writes would.
type crashingSchedules struct {
	batch.JobScheduleStore
	mu      sync.Mutex
	crashes int
}

func (c *crashingSchedules) UpdateJobSchedule(ctx context.Context, account string, s *batch.JobScheduleRecord, prev string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.crashes > 0 && s.JobCount > 0 {
		c.crashes--
		return errors.New("crash before the run was recorded")
	}
	return c.JobScheduleStore.UpdateJobSchedule(ctx, account, s, prev)
}

func TestJobScheduleRunner(t *testing.T) {
	sqlstoretest.ForEachEngine(t, testJobScheduleRunner)
}

// testJobScheduleRunner runs the runner on a clock the test moves: a crash
// between creating a job and recording it doubles nothing, a locked account
// creates no job until it unlocks, and an occurrence whose start window
// passed while it was locked is skipped.
func testJobScheduleRunner(t *testing.T, db *sqlstore.DB) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	d, fk := newDataService(t, db)
	keys := &lockableKeys{keys: fk}
	crash := &crashingSchedules{JobScheduleStore: &sqlstore.BatchJobScheduleStore{DB: db}, crashes: 1}
	var mu sync.Mutex
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	now := t0
	setNow := func(v time.Time) { mu.Lock(); now = v; mu.Unlock() }
	d.Keys, d.Schedules, d.ScheduleTick, d.MinScheduleInterval = keys, crash, 5*time.Millisecond, time.Second
	d.Now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }

	if _, err := d.AddJobSchedule(ctx, "acct1", "s", batch.JobScheduleSpec{
		Schedule:         &batch.Schedule{RecurrenceInterval: ptr("PT1M"), StartWindow: ptr("PT30S")},
		JobSpecification: &batch.JobSpec{PoolInfo: batch.PoolInfo{PoolID: "p1"}},
	}); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); d.RunJobSchedules(ctx, slog.New(slog.NewTextHandler(io.Discard, nil))) }()
	defer func() { cancel(); <-done }()

	jobs := func() []string {
		rs, err := crash.ListScheduleJobs(ctx, "acct1", "s", batch.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, r := range rs {
			ids = append(ids, r.ID)
		}
		return ids
	}
	wait := func(what string, cond func(s *batch.JobSchedule) bool) *batch.JobSchedule {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			s, err := d.GetJobSchedule(ctx, "acct1", "s")
			if err == nil && cond(s) {
				return s
			}
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s: %+v %v, jobs %v", what, s, err, jobs())
			}
			time.Sleep(5 * time.Millisecond)
		}
	}

	// The first run crashes after creating s:job-1; the next pass finds
	// the job and records it instead of creating another.
	s := wait("job-1 recorded", func(s *batch.JobSchedule) bool { return s.JobCount == 1 })
	if s.RecentJobID != "s:job-1" || !s.LastRunTime.Equal(t0) || !s.NextRunTime.Equal(t0.Add(time.Minute)) {
		t.Fatalf("after the first run: %+v", s.JobScheduleMeta)
	}
	if got := jobs(); len(got) != 1 || got[0] != "s:job-1" {
		t.Fatalf("jobs after a crash between create and record: %v", got)
	}
	crash.mu.Lock()
	left := crash.crashes
	crash.mu.Unlock()
	if left != 0 {
		t.Fatal("the crash was not simulated")
	}

	// Locked at the next occurrence: no job until the key is back.
	if _, err := d.TerminateJob(ctx, "acct1", "s:job-1", "", ""); err != nil {
		t.Fatal(err)
	}
	keys.lock(true)
	setNow(t0.Add(time.Minute + 10*time.Second))
	time.Sleep(50 * time.Millisecond)
	if got := jobs(); len(got) != 1 {
		t.Fatalf("a locked account's schedule created %v", got)
	}
	keys.lock(false)
	s = wait("job-2 after unlock", func(s *batch.JobSchedule) bool { return s.JobCount == 2 })
	if !s.LastRunTime.Equal(t0.Add(time.Minute)) {
		t.Errorf("job-2 ran for occurrence %v, want %v", s.LastRunTime, t0.Add(time.Minute))
	}

	// Locked past the next occurrence's start window: that run is lost,
	// the following one is made.
	if _, err := d.TerminateJob(ctx, "acct1", "s:job-2", "", ""); err != nil {
		t.Fatal(err)
	}
	keys.lock(true)
	setNow(t0.Add(2*time.Minute + 45*time.Second))
	time.Sleep(20 * time.Millisecond)
	keys.lock(false)
	s = wait("the lost occurrence skipped", func(s *batch.JobSchedule) bool { return s.NextRunTime.Equal(t0.Add(3 * time.Minute)) })
	if s.JobCount != 2 || len(jobs()) != 2 {
		t.Fatalf("a run whose start window passed was made: %+v, jobs %v", s.JobScheduleMeta, jobs())
	}
	setNow(t0.Add(3*time.Minute + time.Second))
	s = wait("job-3", func(s *batch.JobSchedule) bool { return s.JobCount == 3 })
	if !s.LastRunTime.Equal(t0.Add(3 * time.Minute)) {
		t.Errorf("job-3 ran for %v", s.LastRunTime)
	}

	// doNotRunAfter: no more runs; the schedule completes with its job.
	if _, err := d.UpdateJobSchedule(ctx, "acct1", "s", "", batch.JobScheduleUpdate{Schedule: &batch.Schedule{
		RecurrenceInterval: ptr("PT1M"), DoNotRunAfter: ptr(t0.Add(3*time.Minute + 30*time.Second))}}); err != nil {
		t.Fatal(err)
	}
	setNow(t0.Add(5 * time.Minute))
	time.Sleep(30 * time.Millisecond)
	if s, _ := d.GetJobSchedule(ctx, "acct1", "s"); s.State != batch.ScheduleActive || s.JobCount != 3 || !s.NextRunTime.IsZero() {
		t.Fatalf("past doNotRunAfter with job-3 active: %+v", s.JobScheduleMeta)
	}
	if _, err := d.TerminateJob(ctx, "acct1", "s:job-3", "", ""); err != nil {
		t.Fatal(err)
	}
	s = wait("completed", func(s *batch.JobSchedule) bool { return s.State == batch.ScheduleCompleted })
	if !s.EndTime.Equal(t0.Add(5*time.Minute)) || len(jobs()) != 3 {
		t.Errorf("completed: %+v, jobs %v", s.JobScheduleMeta, jobs())
	}
}
