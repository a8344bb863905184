package batch_test

import (
	"context"
	"encoding/json"
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

// fakePools records the auto pools that exist.
type fakePools struct {
	mu    sync.Mutex
	pools map[string]bool
}

func (f *fakePools) ValidateAutoPool(_ context.Context, _ string, pool json.RawMessage) error {
	var v struct{ VMSize string }
	if json.Unmarshal(pool, &v) != nil || v.VMSize == "" {
		return custody.Errorf(custody.KindInvalid, "MissingRequiredProperty", "no vmSize")
	}
	return nil
}

func (f *fakePools) CreateAutoPool(_ context.Context, account, id string, _ json.RawMessage) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pools[account+"/"+id] = true
	return nil
}

func (f *fakePools) DeleteAutoPool(_ context.Context, account, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.pools, account+"/"+id)
	return nil
}

func (f *fakePools) has(account, id string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.pools[account+"/"+id]
}

func (f *fakePools) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.pools)
}

func TestAutoPoolLifecycle(t *testing.T) {
	sqlstoretest.ForEachEngine(t, testAutoPoolLifecycle)
}

// testAutoPoolLifecycle: a job's auto pool is made with it and removed
// with it, also when the job could not be stored, and the leftovers of a
// crash between the pool and its job are cleaned up after the grace time.
func testAutoPoolLifecycle(t *testing.T, db *sqlstore.DB) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	d, _ := newDataService(t, db)
	pools := &fakePools{pools: map[string]bool{}}
	store := &sqlstore.BatchAutoPoolStore{DB: db}
	var mu sync.Mutex
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	setNow := func(v time.Time) { mu.Lock(); now = v; mu.Unlock() }
	d.Now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	d.AutoPools, d.AutoPoolStore = pools, store
	d.Schedules, d.ScheduleTick = &sqlstore.BatchJobScheduleStore{DB: db}, 5*time.Millisecond

	auto := batch.PoolInfo{AutoPoolSpecification: &batch.AutoPoolSpecification{AutoPoolIDPrefix: ptr("ap"),
		PoolLifetimeOption: "job", Pool: json.RawMessage(`{"vmSize":"standard_d2s_v3"}`)}}
	_, err := d.AddJob(ctx, "acct1", "bad", batch.JobSpec{PoolInfo: batch.PoolInfo{AutoPoolSpecification: &batch.AutoPoolSpecification{
		PoolLifetimeOption: "job", Pool: json.RawMessage(`{}`)}}})
	if custody.ErrorKind(err) != custody.KindInvalid || pools.count() != 0 {
		t.Fatalf("a bad pool specification: %v, %d pools", err, pools.count())
	}
	j, err := d.AddJob(ctx, "acct1", "j1", batch.JobSpec{PoolInfo: auto})
	if err != nil {
		t.Fatal(err)
	}
	if !pools.has("acct1", j.PoolID) || len(j.PoolID) != len("ap_")+36 {
		t.Fatalf("job j1 runs on %q; pools %v", j.PoolID, pools.pools)
	}
	// A job that could not be stored leaves no pool.
	if _, err := d.AddJob(ctx, "acct1", "J1", batch.JobSpec{PoolInfo: auto}); custody.ErrorKind(err) != custody.KindConflict || pools.count() != 1 {
		t.Fatalf("a job id in use: %v, %d pools", err, pools.count())
	}
	// A crash between creating a pool and storing its job: the pool is
	// removed after the grace time; a crash between storing the job and
	// recording that, the pool is kept for the job.
	for _, r := range []*batch.AutoPoolRecord{
		{Account: "acct1", PoolID: "orphan", OwnerKind: batch.AutoPoolOwnerJob, OwnerID: "never", CreatedAt: now},
		{Account: "acct1", PoolID: "unbound", OwnerKind: batch.AutoPoolOwnerJob, OwnerID: "j2", CreatedAt: now},
	} {
		if err := store.AddAutoPool(ctx, r); err != nil {
			t.Fatal(err)
		}
		_ = pools.CreateAutoPool(ctx, "acct1", r.PoolID, nil)
	}
	if _, err := d.AddJob(ctx, "acct1", "j2", batch.JobSpec{PoolInfo: batch.PoolInfo{PoolID: "unbound"}}); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); d.RunJobSchedules(ctx, slog.New(slog.NewTextHandler(io.Discard, nil))) }()
	defer func() { cancel(); <-done }()
	time.Sleep(50 * time.Millisecond)
	if !pools.has("acct1", "orphan") || !pools.has("acct1", "unbound") || !pools.has("acct1", j.PoolID) {
		t.Fatalf("pools within the grace time: %v", pools.pools)
	}
	setNow(now.Add(2 * time.Minute))
	waitPools := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s: pools %v", what, pools.pools)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitPools("the orphan removed", func() bool { return !pools.has("acct1", "orphan") })
	if !pools.has("acct1", "unbound") || !pools.has("acct1", j.PoolID) {
		t.Fatalf("pools of active jobs were removed: %v", pools.pools)
	}
	// Completing or deleting the job removes its pool.
	if _, err := d.TerminateJob(ctx, "acct1", "j2", "", ""); err != nil {
		t.Fatal(err)
	}
	waitPools("j2's pool removed", func() bool { return !pools.has("acct1", "unbound") })
	if err := d.DeleteJob(ctx, "acct1", "j1", ""); err != nil {
		t.Fatal(err)
	}
	waitPools("j1's pool and every record removed", func() bool {
		rs, err := store.ListAutoPools(ctx, 100)
		return err == nil && len(rs) == 0 && pools.count() == 0
	})
}
