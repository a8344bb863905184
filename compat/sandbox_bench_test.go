package compat_test

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/batch/azbatch"

	"custody/node/sandbox"
	"custody/server"
	"custody/server/servertest"
)

// sandboxBenchSide is one of the two servers BenchmarkSandbox compares.
type sandboxBenchSide struct {
	name string
	ts   *servertest.TestServer
	c    *azbatch.Client
	// rates are the tasks/s of each throughput round; started the time from
	// submitting a single task to its startTime, ran to its command's first
	// reading of the clock.
	rates        []float64
	started, ran []time.Duration
}

// BenchmarkSandbox measures what the task sandbox costs: two servers side by
// side, one whose local nodes sandbox their tasks (the default) and one with
// UnsafeSharedHostNodes, each with a pool of 2 local nodes of 2 task slots
// (standard_d2s_v3). Each of b.N iterations runs sandboxRounds throughput
// rounds on each, alternating (sandboxed, unsafe, sandboxed, ...): a round
// adds sandboxTasks `true` tasks in calls of 100 and takes the rate from the
// first task's creationTime to the last task's endTime, by the server's own
// times. Then, alternating again, sandboxSingles single tasks on idle nodes,
// each timed from its submission to its startTime (ms-start) and to the
// first thing its command does (ms-run: the command prints the clock). The
// metrics are medians; ratio is sandboxed tasks/s over unsafe tasks/s.
func BenchmarkSandbox(b *testing.B) {
	const (
		sandboxRounds  = 5
		sandboxTasks   = 200
		sandboxSingles = 9
	)
	if _, err := sandbox.Probe(); err != nil {
		b.Skipf("the task sandbox cannot be built here: %v", err)
	}
	b.Setenv(agentEnv, "1")
	ctx := context.Background()
	sides := []*sandboxBenchSide{{name: "sandboxed"}, {name: "unsafe"}}
	for i, s := range sides {
		unsafe := i == 1
		s.ts = servertest.New(b, func(c *server.Config) {
			c.NodeCommand = []string{os.Args[0], "node"}
			c.NodePoll = time.Second
			c.UnsafeSharedHostNodes = unsafe
			if os.Getenv("CUSTODY_TEST_VERBOSE") != "" {
				c.NodeLog = os.Stderr
			}
		})
		account := "bench" + s.name
		mustBatchAccount(b, s.ts, "rg-bench", account)
		s.c = dataClient(b, s.ts, account)
		mustPool(b, s.c, "p1", 2, 2)
	}
	exe, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	defer func() {
		// Stopping the servers stops their nodes, and the nodes their tasks:
		// nothing started from this binary may be left running.
		for _, s := range sides {
			s.ts.Close()
		}
		var left []string
		deadline := time.Now().Add(15 * time.Second)
		for {
			left = processesOf(exe)
			if len(left) == 0 || time.Now().After(deadline) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if len(left) > 0 {
			b.Errorf("processes left behind: %s", strings.Join(left, "; "))
		}
	}()

	b.ResetTimer()
	for it := 0; it < b.N; it++ {
		for r := 0; r < sandboxRounds; r++ {
			for _, s := range sides {
				s.rates = append(s.rates, sandboxThroughput(b, s, fmt.Sprintf("r%d-%d", it, r), sandboxTasks))
			}
		}
		for _, s := range sides {
			job := fmt.Sprintf("single%d", it)
			if _, err := s.c.CreateJob(ctx, azbatch.CreateJobContent{ID: to.Ptr(job), PoolInfo: &azbatch.PoolInfo{PoolID: to.Ptr("p1")}}, nil); err != nil {
				b.Fatal(err)
			}
		}
		for r := 0; r < sandboxSingles; r++ {
			for _, s := range sides {
				started, ran := sandboxSingle(b, s, fmt.Sprintf("single%d", it), "t"+strconv.Itoa(r))
				s.started = append(s.started, started)
				s.ran = append(s.ran, ran)
			}
		}
	}
	b.StopTimer()

	for _, s := range sides {
		b.Logf("%s: tasks/s %s; submit to startTime %v; submit to command %v", s.name, fmtRates(s.rates), s.started, s.ran)
		b.ReportMetric(medianFloat(s.rates), s.name+"-tasks/s")
		b.ReportMetric(ms(medianDuration(s.started)), s.name+"-ms-start")
		b.ReportMetric(ms(medianDuration(s.ran)), s.name+"-ms-run")
	}
	b.ReportMetric(medianFloat(sides[0].rates)/medianFloat(sides[1].rates), "ratio")
}

// sandboxThroughput runs n `true` tasks in a new job and returns n over the
// time from the first task's creationTime to the last task's endTime.
func sandboxThroughput(b *testing.B, s *sandboxBenchSide, job string, n int) float64 {
	b.Helper()
	ctx := context.Background()
	if _, err := s.c.CreateJob(ctx, azbatch.CreateJobContent{ID: to.Ptr(job), PoolInfo: &azbatch.PoolInfo{PoolID: to.Ptr("p1")}}, nil); err != nil {
		b.Fatal(err)
	}
	addTrueTasks(b, s.c, job, 0, n, "true")
	deadline := time.Now().Add(5 * time.Minute)
	for {
		tc, err := s.c.GetJobTaskCounts(ctx, job, nil)
		if err != nil {
			b.Fatal(err)
		}
		if int(*tc.TaskCounts.Completed) == n {
			if f := *tc.TaskCounts.Failed; f != 0 {
				b.Fatalf("%s job %s: %d of %d tasks failed", s.name, job, f, n)
			}
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("%s job %s: %d of %d tasks completed after 5 minutes", s.name, job, *tc.TaskCounts.Completed, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	var first, last time.Time
	count := 0
	p := s.c.NewListTasksPager(job, nil)
	for p.More() {
		page, err := p.NextPage(ctx)
		if err != nil {
			b.Fatal(err)
		}
		for _, tk := range page.Value {
			count++
			if tk.CreationTime == nil || tk.ExecutionInfo == nil || tk.ExecutionInfo.EndTime == nil {
				b.Fatalf("%s task %s: no creationTime or endTime", s.name, *tk.ID)
			}
			if first.IsZero() || tk.CreationTime.Before(first) {
				first = *tk.CreationTime
			}
			if tk.ExecutionInfo.EndTime.After(last) {
				last = *tk.ExecutionInfo.EndTime
			}
		}
	}
	if count != n {
		b.Fatalf("%s job %s: listed %d tasks, want %d", s.name, job, count, n)
	}
	return float64(n) / last.Sub(first).Seconds()
}

// sandboxSingle runs one task that prints the clock and returns the times
// from its submission to its startTime and to that reading.
func sandboxSingle(b *testing.B, s *sandboxBenchSide, job, id string) (started, ran time.Duration) {
	b.Helper()
	ctx := context.Background()
	sent := time.Now()
	if _, err := s.c.CreateTask(ctx, job, azbatch.CreateTaskContent{ID: to.Ptr(id), CommandLine: to.Ptr("date +%s%N")}, nil); err != nil {
		b.Fatal(err)
	}
	tk := waitTask(b, s.c, job, id, 30*time.Second)
	if ei := tk.ExecutionInfo; ei == nil || ei.StartTime == nil || ei.ExitCode == nil || *ei.ExitCode != 0 {
		b.Fatalf("%s task %s: executionInfo %+v", s.name, id, tk.ExecutionInfo)
	}
	r, err := s.c.GetTaskFile(ctx, job, id, "stdout.txt", nil)
	if err != nil {
		b.Fatal(err)
	}
	out, err := io.ReadAll(r.Body)
	r.Body.Close()
	if err != nil {
		b.Fatal(err)
	}
	ns, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
	if err != nil {
		b.Fatalf("%s task %s: stdout %q", s.name, id, out)
	}
	return tk.ExecutionInfo.StartTime.Sub(sent), time.Unix(0, ns).Sub(sent)
}

// processesOf lists the processes, other than this one, running exe.
func processesOf(exe string) []string {
	entries, _ := os.ReadDir("/proc")
	var out []string
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		if target, err := os.Readlink(filepath.Join("/proc", e.Name(), "exe")); err == nil && target == exe {
			cmd, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
			out = append(out, e.Name()+" "+strings.ReplaceAll(strings.TrimRight(string(cmd), "\x00"), "\x00", " "))
		}
	}
	return out
}

func medianFloat(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	return s[len(s)/2]
}

func medianDuration(xs []time.Duration) time.Duration {
	s := append([]time.Duration(nil), xs...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func fmtRates(xs []float64) string {
	var parts []string
	for _, x := range xs {
		parts = append(parts, strconv.FormatFloat(x, 'f', 1, 64))
	}
	return strings.Join(parts, " ")
}
