package compat_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/batch/azbatch"
)

func addTrueTasks(b *testing.B, c *azbatch.Client, job string, from, n int, cmd string) {
	b.Helper()
	for i := from; i < from+n; i += 100 {
		var g azbatch.TaskGroup
		for j := i; j < min(i+100, from+n); j++ {
			g.Value = append(g.Value, azbatch.CreateTaskContent{ID: to.Ptr("t" + strconv.Itoa(j)), CommandLine: to.Ptr(cmd)})
		}
		if _, err := c.CreateTaskCollection(context.Background(), job, g, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkComputeTrueTasks runs `true` tasks from add-collection to
// completed on a pool of 2 local nodes (4 slots each), beside the rate at
// which this process starts and reaps /bin/sh -c true with os/exec.
func BenchmarkComputeTrueTasks(b *testing.B) {
	const n = 1000
	ts := computeServer(b)
	mustBatchAccount(b, ts, "rg-bench", "benchtrue")
	c := dataClient(b, ts, "benchtrue")
	ctx := context.Background()
	mustPool(b, c, "p1", 2, 4)

	start := time.Now()
	for i := 0; i < n; i++ {
		if err := exec.Command("/bin/sh", "-c", "true").Run(); err != nil {
			b.Fatal(err)
		}
	}
	direct := float64(n) / time.Since(start).Seconds()

	b.ResetTimer()
	var rate float64
	for it := 0; it < b.N; it++ {
		job := "j" + strconv.Itoa(it)
		if _, err := c.CreateJob(ctx, azbatch.CreateJobContent{ID: to.Ptr(job), PoolInfo: &azbatch.PoolInfo{PoolID: to.Ptr("p1")}}, nil); err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		addTrueTasks(b, c, job, 0, n, "true")
		for {
			tc, err := c.GetJobTaskCounts(ctx, job, nil)
			if err != nil {
				b.Fatal(err)
			}
			if *tc.TaskCounts.Completed == n {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		rate = float64(n) / time.Since(start).Seconds()
	}
	b.ReportMetric(rate, "tasks/s")
	b.ReportMetric(direct, "exec/s")
	b.ReportMetric(rate/direct, "ratio")
}

// BenchmarkComputeSubmit adds tasks 100 per call to a job whose pool has no
// nodes (submission alone, on SQLite).
func BenchmarkComputeSubmit(b *testing.B) {
	ts := computeServer(b)
	mustBatchAccount(b, ts, "rg-bench", "benchsubmit")
	c := dataClient(b, ts, "benchsubmit")
	ctx := context.Background()
	if _, err := c.CreatePool(ctx, azbatch.CreatePoolContent{ID: to.Ptr("empty"), VMSize: to.Ptr("standard_d2s_v3")}, nil); err != nil {
		b.Fatal(err)
	}
	if _, err := c.CreateJob(ctx, azbatch.CreateJobContent{ID: to.Ptr("j"), PoolInfo: &azbatch.PoolInfo{PoolID: to.Ptr("empty")}}, nil); err != nil {
		b.Fatal(err)
	}
	const n = 5000
	b.ResetTimer()
	start := time.Now()
	for it := 0; it < b.N; it++ {
		addTrueTasks(b, c, "j", it*n, n, "echo hello")
	}
	b.ReportMetric(float64(n*b.N)/time.Since(start).Seconds(), "tasks/s")
}

// BenchmarkComputeSubmitToStart reports the median time from submitting a
// single task to its process starting on an idle node.
func BenchmarkComputeSubmitToStart(b *testing.B) {
	ts := computeServer(b)
	mustBatchAccount(b, ts, "rg-bench", "benchlatency")
	c := dataClient(b, ts, "benchlatency")
	ctx := context.Background()
	mustPool(b, c, "p1", 1, 1)
	if _, err := c.CreateJob(ctx, azbatch.CreateJobContent{ID: to.Ptr("j"), PoolInfo: &azbatch.PoolInfo{PoolID: to.Ptr("p1")}}, nil); err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	const rounds = 30
	var lat []time.Duration
	b.ResetTimer()
	for it := 0; it < b.N; it++ {
		for r := 0; r < rounds; r++ {
			id := "t" + strconv.Itoa(it*rounds+r)
			f := filepath.Join(dir, id)
			sent := time.Now()
			if _, err := c.CreateTask(ctx, "j", azbatch.CreateTaskContent{ID: to.Ptr(id), CommandLine: to.Ptr("date +%s%N > " + f)}, nil); err != nil {
				b.Fatal(err)
			}
			for {
				data, err := os.ReadFile(f)
				if err == nil && strings.HasSuffix(string(data), "\n") {
					ns, _ := strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64)
					lat = append(lat, time.Unix(0, ns).Sub(sent))
					break
				}
				time.Sleep(time.Millisecond)
			}
			waitTask(b, c, "j", id, 10*time.Second)
		}
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "ms-median")
}
