package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/batch/azbatch"
)

// ---- one job of a million tasks ----

const (
	millionJob     = "million"
	millionPerCall = 100
	// millionEdge is the number of tasks the first and last submission
	// rates are measured over.
	millionEdge = 10_000
)

// memory is a sample of the server's resident memory.
type memory struct{ rss, hwm int64 } // KiB

func (m memory) String() string {
	return fmt.Sprintf("RSS %s, peak %s", mib(m.rss), mib(m.hwm))
}

func mib(kib int64) string { return fmt.Sprintf("%.0f MiB", float64(kib)/1024) }

// memory reads VmRSS and VmHWM of the server process.
func (s *serverProc) memory() memory {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(s.cmd.Process.Pid) + "/status")
	if err != nil {
		return memory{}
	}
	var m memory
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		n, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			m.rss = n
		case "VmHWM:":
			m.hwm = n
		}
	}
	return m
}

// latencies keeps call durations.
type latencies struct {
	mu sync.Mutex
	d  []time.Duration
}

func (l *latencies) add(d time.Duration) {
	l.mu.Lock()
	l.d = append(l.d, d)
	l.mu.Unlock()
}

// summary is "median x, p99 y, max z (n calls)".
func (l *latencies) summary() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.d) == 0 {
		return "no calls"
	}
	s := slices.Clone(l.d)
	slices.Sort(s)
	at := func(q float64) time.Duration { return s[min(len(s)-1, int(q*float64(len(s))))] }
	return fmt.Sprintf("median %s, p99 %s, max %s (%d calls)", ms(at(0.5)), ms(at(0.99)), ms(s[len(s)-1]), len(s))
}

func (l *latencies) max() time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.d) == 0 {
		return 0
	}
	return slices.Max(l.d)
}

func ms(d time.Duration) string {
	if d < 10*time.Millisecond {
		return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000)
	}
	return fmt.Sprintf("%.0f ms", float64(d.Microseconds())/1000)
}

// timeCalls runs f n times and returns their latencies.
func timeCalls(n int, f func() error) (*latencies, error) {
	l := &latencies{}
	for range n {
		start := time.Now()
		if err := f(); err != nil {
			return nil, err
		}
		l.add(time.Since(start))
	}
	return l, nil
}

// prober calls another account's data plane (adding one task to a job of
// its own, a write) back to back until stopped, and keeps the latencies:
// what a neighbour sees while the big job is terminated and deleted.
type prober struct {
	c    *azbatch.Client
	n    atomic.Int64
	lat  *latencies
	stop chan struct{}
	done chan error
}

func startProber(ctx context.Context, c *azbatch.Client, job string) *prober {
	p := &prober{c: c, lat: &latencies{}, stop: make(chan struct{}), done: make(chan error, 1)}
	go func() {
		for {
			select {
			case <-p.stop:
				p.done <- nil
				return
			default:
			}
			id := "p" + strconv.FormatInt(p.n.Add(1), 10) + "-" + strconv.FormatInt(time.Now().UnixNano(), 36)
			start := time.Now()
			if _, err := c.CreateTask(ctx, job, azbatch.CreateTaskContent{ID: to.Ptr(id), CommandLine: to.Ptr("true")}, nil); err != nil {
				p.done <- fmt.Errorf("another account's add task: %w", err)
				return
			}
			p.lat.add(time.Since(start))
			time.Sleep(5 * time.Millisecond)
		}
	}()
	return p
}

func (p *prober) finish() (*latencies, error) {
	close(p.stop)
	return p.lat, <-p.done
}

// millionRow submits o.tasks tasks to one job on a pool without nodes
// (they all stay active), then measures what a user of that job and a
// neighbour on another account see.
func (b *bench) millionRow(ctx context.Context) ([]row, error) {
	n := b.o.tasks
	if n < 2*millionEdge || n%millionPerCall != 0 {
		return nil, fmt.Errorf("-tasks must be a multiple of %d and at least %d", millionPerCall, 2*millionEdge)
	}
	acct, err := b.account(ctx, "benchmillion", false)
	if err != nil {
		return nil, err
	}
	c, err := b.batchClient(acct)
	if err != nil {
		return nil, err
	}
	other, err := b.account(ctx, "benchneighbour", false)
	if err != nil {
		return nil, err
	}
	oc, err := b.batchClient(other)
	if err != nil {
		return nil, err
	}
	for _, cl := range []*azbatch.Client{c, oc} {
		if _, err := cl.CreatePool(ctx, azbatch.CreatePoolContent{ID: to.Ptr("empty"), VMSize: to.Ptr("standard_d2s_v3"), TargetDedicatedNodes: to.Ptr[int32](0)}, nil); err != nil {
			return nil, fmt.Errorf("create pool: %w", err)
		}
	}
	if _, err := c.CreateJob(ctx, azbatch.CreateJobContent{ID: to.Ptr(millionJob), PoolInfo: &azbatch.PoolInfo{PoolID: to.Ptr("empty")}}, nil); err != nil {
		return nil, fmt.Errorf("create job: %w", err)
	}
	if _, err := oc.CreateJob(ctx, azbatch.CreateJobContent{ID: to.Ptr("neighbour"), PoolInfo: &azbatch.PoolInfo{PoolID: to.Ptr("empty")}}, nil); err != nil {
		return nil, fmt.Errorf("create job: %w", err)
	}
	// Warm both clients (token, connections), as the other rows do.
	if _, err := timeCalls(3, func() error { _, err := c.GetJob(ctx, millionJob, nil); return err }); err != nil {
		return nil, err
	}
	memBefore := b.s.memory()
	b.logf("million: server %s before submission", memBefore)

	// Submission: b.o.submitters callers take the next call of 100 tasks
	// until all are sent. Each call's start and end are kept, to measure
	// the first and the last millionEdge tasks.
	calls := n / millionPerCall
	starts, ends := make([]time.Time, calls), make([]time.Time, calls)
	var next, done atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	cpu0 := b.s.cpuTime()
	stopProfile := b.profileMillion(ctx, "million-submit")
	t0 := time.Now()
	// The server's CPU time, sampled with the number of calls answered,
	// for the CPU a task over the first and the last millionEdge tasks.
	type cpuSample struct {
		calls int
		cpu   time.Duration
	}
	samples := []cpuSample{{0, cpu0}}
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tk := time.NewTicker(20 * time.Millisecond)
		defer tk.Stop()
		for {
			select {
			case <-stopSampling:
				return
			case <-tk.C:
				samples = append(samples, cpuSample{int(done.Load()), b.s.cpuTime()})
			}
		}
	}()
	for range b.o.submitters {
		wg.Go(func() {
			for {
				k := int(next.Add(1) - 1)
				if k >= calls || firstErr.Load() != nil {
					return
				}
				g := azbatch.TaskGroup{Value: make([]azbatch.CreateTaskContent, millionPerCall)}
				for j := range g.Value {
					i := k*millionPerCall + j
					g.Value[j] = azbatch.CreateTaskContent{
						ID:                  to.Ptr(millionTaskID(i)),
						CommandLine:         to.Ptr("/bin/sh -c 'echo task " + strconv.Itoa(i) + "'"),
						EnvironmentSettings: []azbatch.EnvironmentSetting{{Name: to.Ptr("INDEX"), Value: to.Ptr(strconv.Itoa(i))}},
					}
				}
				starts[k] = time.Now()
				if err := addCollection(ctx, c, millionJob, g); err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
				ends[k] = time.Now()
				done.Add(1)
				if b.o.verbose && (k+1)%(100_000/millionPerCall) == 0 {
					b.logf("million: call %d of %d done after %s; server %s", k+1, calls, time.Since(t0).Round(time.Second), b.s.memory())
				}
			}
		})
	}
	wg.Wait()
	total := time.Since(t0)
	close(stopSampling)
	<-sampled
	if err := stopProfile(); err != nil {
		return nil, err
	}
	if err, _ := firstErr.Load().(error); err != nil {
		return nil, err
	}
	cpuEnd := b.s.cpuTime()
	samples = append(samples, cpuSample{calls, cpuEnd})
	cpuPerTask := float64((cpuEnd - cpu0).Microseconds()) / float64(n)
	// The first sample at or past millionEdge tasks answered, and the last
	// one at or before the last millionEdge tasks began to be answered.
	var cpuFirst, cpuLast float64
	for _, sm := range samples {
		if sm.calls >= millionEdge/millionPerCall {
			cpuFirst = float64((sm.cpu - cpu0).Microseconds()) / float64(sm.calls*millionPerCall)
			break
		}
	}
	for i := len(samples) - 1; i >= 0; i-- {
		if sm := samples[i]; sm.calls <= calls-millionEdge/millionPerCall {
			cpuLast = float64((cpuEnd - sm.cpu).Microseconds()) / float64((calls-sm.calls)*millionPerCall)
			break
		}
	}
	edge := millionEdge / millionPerCall
	span := func(from, to int) float64 {
		first, last := starts[from], ends[from]
		for k := from; k < to; k++ {
			if starts[k].Before(first) {
				first = starts[k]
			}
			if ends[k].After(last) {
				last = ends[k]
			}
		}
		return float64((to-from)*millionPerCall) / last.Sub(first).Seconds()
	}
	rateFirst, rateLast := span(0, edge), span(calls-edge, calls)
	overall := float64(n) / total.Seconds()
	memSubmitted := b.s.memory()
	b.logf("million: %d tasks in %s: first %d %.0f/s, last %d %.0f/s, overall %.0f/s; server CPU a task: %.0f µs in all, %.0f µs over the first %d, %.0f µs over the last; server %s",
		n, total.Round(time.Millisecond), millionEdge, rateFirst, millionEdge, rateLast, overall, cpuPerTask, cpuFirst, millionEdge, cpuLast, memSubmitted)

	// Task counts.
	var counts azbatch.GetJobTaskCountsResponse
	countLat, err := timeCalls(5, func() error { var err error; counts, err = c.GetJobTaskCounts(ctx, millionJob, nil); return err })
	if err != nil {
		return nil, fmt.Errorf("task counts: %w", err)
	}
	if got := *counts.TaskCounts.Active; int(got) != n {
		return nil, fmt.Errorf("task counts: %d active, want %d", got, n)
	}
	b.logf("million: task counts %s", countLat.summary())

	// $filter on state: the first page of the active tasks (all of them),
	// and of the completed ones (none).
	filterPage := func(filter string, want int) func() error {
		return func() error {
			pg := c.NewListTasksPager(millionJob, &azbatch.ListTasksOptions{Filter: to.Ptr(filter)})
			page, err := pg.NextPage(ctx)
			if err != nil {
				return fmt.Errorf("list tasks %s: %w", filter, err)
			}
			if len(page.Value) != want {
				return fmt.Errorf("list tasks %s: %d tasks on the first page, want %d", filter, len(page.Value), want)
			}
			return nil
		}
	}
	activeLat, err := timeCalls(5, filterPage("state eq 'active'", 1000))
	if err != nil {
		return nil, err
	}
	completedLat, err := timeCalls(5, filterPage("state eq 'completed'", 0))
	if err != nil {
		return nil, err
	}
	b.logf("million: $filter state eq 'active' first page %s; state eq 'completed' %s", activeLat.summary(), completedLat.summary())

	// Paging through every task, checking each comes once, in id order.
	pageLat := &latencies{}
	seen := 0
	prev := ""
	stopProfile = b.profileMillion(ctx, "million-paging")
	tp := time.Now()
	pg := c.NewListTasksPager(millionJob, nil)
	for pg.More() {
		start := time.Now()
		page, err := pg.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("page %d of the tasks: %w", pageLat.count()+1, err)
		}
		pageLat.add(time.Since(start))
		for _, t := range page.Value {
			if *t.ID <= prev {
				return nil, fmt.Errorf("paging: task %s after %s", *t.ID, prev)
			}
			prev = *t.ID
			seen++
		}
	}
	pagingTotal := time.Since(tp)
	if err := stopProfile(); err != nil {
		return nil, err
	}
	if seen != n {
		return nil, fmt.Errorf("paging listed %d tasks, want %d", seen, n)
	}
	memListed := b.s.memory()
	b.logf("million: paged through %d tasks in %s, %d pages, %s; server %s", seen, pagingTotal.Round(time.Millisecond), pageLat.count(), pageLat.summary(), memListed)

	// A neighbour's calls: alone first, then while the job is terminated
	// and deleted.
	quiet := startProber(ctx, oc, "neighbour")
	time.Sleep(2 * time.Second)
	quietLat, err := quiet.finish()
	if err != nil {
		return nil, err
	}
	busy := startProber(ctx, oc, "neighbour")
	time.Sleep(200 * time.Millisecond)
	ts := time.Now()
	if _, err := c.TerminateJob(ctx, millionJob, nil); err != nil {
		busy.finish()
		return nil, fmt.Errorf("terminate job: %w", err)
	}
	var terminated time.Duration
	for {
		j, err := c.GetJob(ctx, millionJob, nil)
		if err != nil {
			busy.finish()
			return nil, fmt.Errorf("get job: %w", err)
		}
		if *j.State == azbatch.JobStateCompleted {
			terminated = time.Since(ts)
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	td := time.Now()
	if _, err := c.DeleteJob(ctx, millionJob, nil); err != nil {
		busy.finish()
		return nil, fmt.Errorf("delete job: %w", err)
	}
	deleteCall := time.Since(td)
	var deleted time.Duration
	for {
		_, err := c.GetJob(ctx, millionJob, nil)
		var re *azcore.ResponseError
		if errors.As(err, &re) && re.StatusCode == 404 {
			deleted = time.Since(td)
			break
		}
		if err != nil {
			busy.finish()
			return nil, fmt.Errorf("get job while it is deleted: %w", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	busyLat, err := busy.finish()
	if err != nil {
		return nil, err
	}
	memAfter := b.s.memory()
	b.logf("million: terminate %s, delete call %s, deleted after %s; neighbour alone %s, meanwhile %s; server %s",
		ms(terminated), ms(deleteCall), deleted.Round(time.Millisecond), quietLat.summary(), busyLat.summary(), memAfter)

	ratio := rateLast / rateFirst
	tasks := rate(float64(n), "")
	return []row{
		{
			measure:  fmt.Sprintf("AddTaskCollection into one job of %s tasks (%d tasks a call, %d callers): rate over the last %s tasks vs the first %s (overall %s; server CPU %.0f µs a task)", tasks, millionPerCall, b.o.submitters, rate(millionEdge, ""), rate(millionEdge, ""), rate(overall, " tasks/s"), cpuPerTask),
			baseline: fmt.Sprintf("first %s: %s (server CPU %.0f µs a task)", rate(millionEdge, ""), rate(rateFirst, " tasks/s"), cpuFirst),
			subject:  fmt.Sprintf("last %s: %s (server CPU %.0f µs a task)", rate(millionEdge, ""), rate(rateLast, " tasks/s"), cpuLast),
			ratio:    fmt.Sprintf("%.2f", ratio),
			target:   "at least 0.90",
			met:      ratio >= 0.90,
		},
		{measure: fmt.Sprintf("task counts of the %s-task job", tasks), baseline: "-", subject: countLat.summary(), ratio: "-", target: "-", met: true},
		{measure: "first page of $filter state eq 'active' (1,000 tasks)", baseline: "-", subject: activeLat.summary(), ratio: "-", target: "-", met: true},
		{measure: "first page of $filter state eq 'completed' (none)", baseline: "-", subject: completedLat.summary(), ratio: "-", target: "-", met: true},
		{measure: fmt.Sprintf("paging through all %s tasks (odata.nextLink, 1,000 a page), each once in id order", tasks), baseline: "-",
			subject: fmt.Sprintf("%s in all; a page: %s", pagingTotal.Round(time.Millisecond), pageLat.summary()), ratio: "-", target: "-", met: true},
		{measure: "terminate the job (call to state completed)", baseline: "-", subject: ms(terminated), ratio: "-", target: "-", met: true},
		{measure: "delete the job (call; until GET answers 404)", baseline: "-", subject: fmt.Sprintf("call %s; gone after %s", ms(deleteCall), deleted.Round(time.Millisecond)), ratio: "-", target: "-", met: true},
		{
			measure:  "another account's AddTask while the job is terminated and deleted",
			baseline: "alone: " + quietLat.summary(),
			subject:  busyLat.summary(),
			ratio:    "-",
			target:   "no stall (max under 1 s)",
			met:      busyLat.max() < time.Second,
		},
		{
			measure:  "server resident memory (VmRSS, and VmHWM peak)",
			baseline: "before submission: " + memBefore.String(),
			subject:  fmt.Sprintf("after submission: %s; after paging: %s; after delete: %s", memSubmitted, memListed, memAfter),
			ratio:    fmt.Sprintf("%.2f", float64(memAfter.rss)/float64(max(memBefore.rss, 1))),
			target:   "does not grow with the tasks (under 256 MiB more than before, at every point)",
			met:      max(memSubmitted.rss, memListed.rss, memAfter.rss)-memBefore.rss < 256*1024,
		},
	}, nil
}

// profileMillion takes a CPU profile of the server over the first 10 s of
// a phase when profiles are asked for; the returned function waits for it.
func (b *bench) profileMillion(ctx context.Context, name string) func() error {
	if b.o.profileDir == "" {
		return func() error { return nil }
	}
	done := make(chan error, 1)
	file := filepath.Join(b.o.profileDir, name+".pprof")
	go func() { done <- b.s.profile(ctx, 10*time.Second, file) }()
	return func() error {
		err := <-done
		if err == nil {
			b.logf("profile of the server: %s", file)
		}
		return err
	}
}

func (l *latencies) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.d)
}

// millionTaskID names task i so that ids sort as numbers do.
func millionTaskID(i int) string { return fmt.Sprintf("task-%07d", i) }
