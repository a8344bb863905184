// Command custody-bench measures a Custody server from outside, as a user
// would: it builds `custody`, starts `custody server` as a separate process
// (a temporary data directory, a random loopback port, the task sandbox as
// configured by default), and drives it over TLS with the official Azure SDK
// for Go clients (azidentity with the admin's client secret, azkeys,
// armkeyvault, armbatch, azbatch). The client runs on the same machine, so
// its CPU counts, as it does for any user.
//
// Each row runs its baseline and its subject alternately, rounds times
// (baseline, subject, baseline, subject, ...), and reports the median of
// each and their ratio:
//
//   - vault: UnwrapKey RSA-OAEP-256 with an RSA-2048 key, 8 goroutines
//     sharing one azkeys client, beside crypto/rsa DecryptOAEP of the same
//     key on one goroutine per core (GOMAXPROCS).
//   - tasks: 400 `true` tasks (4 AddTaskCollection calls of 100) on a pool of
//     2 local nodes of 2 slots, from the first task's creationTime to the
//     last task's endTime by the server's times, beside os/exec starting and
//     reaping `true` 400 times on 4 goroutines.
//   - cmk: AddTaskCollection (100 tasks a call) to a customer-managed-key
//     account beside a platform-key account, calls interleaved.
//   - latency: one task at a time on an idle node, its creationTime to its
//     startTime by the server's times (median).
//   - million (not run unless asked for): -tasks tasks (default 1,000,000)
//     added to one job on a pool without nodes, 100 a call by -submitters
//     concurrent callers; the submission rate over the first and the last
//     10,000 tasks, then the latency of task counts, of a $filter on state,
//     of paging through every task, of terminating and deleting the job, of
//     another account's calls meanwhile, and the server's resident memory
//     before, during and after. It runs once, whatever -rounds says.
//
// Run from the module root:
//
//	go run ./cmd/custody-bench
//
// -profile DIR also starts the server with --pprof-listen and saves a CPU
// profile of the server during the last subject round of each row.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"
)

func main() {
	var o options
	flag.IntVar(&o.rounds, "rounds", 3, "rounds of each row (baseline and subject alternately); medians are reported")
	flag.DurationVar(&o.duration, "duration", 3*time.Second, "length of each vault round")
	flag.StringVar(&o.rows, "rows", "vault,tasks,cmk,latency", "rows to run, comma-separated: vault, tasks, cmk, latency, million")
	flag.IntVar(&o.tasks, "tasks", 1_000_000, "tasks of the million row's job")
	flag.IntVar(&o.submitters, "submitters", 4, "concurrent AddTaskCollection callers of the million row")
	flag.StringVar(&o.binary, "custody", "", "custody binary to start (default: go build ./cmd/custody into the temporary directory)")
	flag.StringVar(&o.against, "against", "", "another custody binary: run the vault and tasks rows' subjects (those -rows names) on a server of each binary alternately and report both (to measure a change)")
	flag.StringVar(&o.profileDir, "profile", "", "directory for CPU profiles of the server (one per row, taken during its last subject round); empty takes none")
	flag.BoolVar(&o.rbac, "rbac", false, "make the vault rows' vault authorize by role assignments (RBAC) instead of access policies")
	flag.BoolVar(&o.keep, "keep", false, "keep the temporary directory (data directory, server log) after the run")
	flag.BoolVar(&o.verbose, "v", false, "print every round")
	flag.Parse()
	if o.rounds < 1 {
		fmt.Fprintln(os.Stderr, "custody-bench: -rounds must be at least 1")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "custody-bench:", err)
		os.Exit(1)
	}
}

type options struct {
	rounds     int
	tasks      int
	submitters int
	duration   time.Duration
	rows       string
	binary     string
	profileDir string
	against    string
	rbac       bool
	keep       bool
	verbose    bool
}

// row is one line of the result table.
type row struct {
	measure  string
	baseline string // what the baseline is, with its median
	subject  string // the median of the subject
	ratio    string
	target   string
	met      bool
}

func run(ctx context.Context, o options) error {
	want := map[string]bool{}
	for _, r := range strings.Split(o.rows, ",") {
		r = strings.TrimSpace(r)
		if !slices.Contains([]string{"vault", "tasks", "cmk", "latency", "million"}, r) {
			return fmt.Errorf("-rows: unknown row %q (use vault, tasks, cmk, latency, million)", r)
		}
		want[r] = true
	}
	dir, err := os.MkdirTemp("", "custody-bench-")
	if err != nil {
		return err
	}
	if o.keep {
		fmt.Fprintf(os.Stderr, "custody-bench: keeping %s\n", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	if o.profileDir != "" {
		if err := os.MkdirAll(o.profileDir, 0o755); err != nil {
			return err
		}
	}
	bin := o.binary
	if bin == "" {
		bin = filepath.Join(dir, "custody")
		fmt.Fprintln(os.Stderr, "custody-bench: building custody")
		if err := goBuild(ctx, bin); err != nil {
			return err
		}
	}
	s, err := startServer(ctx, bin, dir, o.profileDir != "")
	if err != nil {
		return err
	}
	defer s.stop()
	fmt.Fprintf(os.Stderr, "custody-bench: server pid %d at %s (%s), %d CPUs, %d rounds\n", s.cmd.Process.Pid, s.ep.Address, s.sandbox, runtime.NumCPU(), o.rounds)
	b, err := newBench(ctx, s, o)
	if err != nil {
		return err
	}
	if o.against != "" {
		s2, err := startServer(ctx, o.against, filepath.Join(dir, "against"), false)
		if err != nil {
			return err
		}
		defer s2.stop()
		b2, err := newBench(ctx, s2, o)
		if err != nil {
			return err
		}
		var rows []row
		if want["vault"] {
			r, err := compareVault(ctx, b, b2)
			if err != nil {
				return err
			}
			rows = append(rows, r...)
		}
		if want["tasks"] {
			r, err := compareTasks(ctx, b, b2)
			if err != nil {
				return fmt.Errorf("tasks: %w (server logs: %s, %s)", err, s.logPath, s2.logPath)
			}
			rows = append(rows, r...)
		}
		printTable(os.Stdout, rows, s.sandbox)
		return nil
	}
	var rows []row
	for _, name := range []string{"vault", "tasks", "cmk", "latency", "million"} {
		if !want[name] {
			continue
		}
		start := time.Now()
		var r []row
		switch name {
		case "vault":
			r, err = b.vaultRow(ctx)
		case "tasks":
			r, err = b.tasksRow(ctx)
		case "cmk":
			r, err = b.cmkRow(ctx)
		case "latency":
			r, err = b.latencyRow(ctx)
		case "million":
			r, err = b.millionRow(ctx)
		}
		if err != nil {
			return fmt.Errorf("%s: %w (server log: %s)", name, err, s.logPath)
		}
		if o.verbose {
			fmt.Fprintf(os.Stderr, "custody-bench: %s took %s\n", name, time.Since(start).Round(time.Millisecond))
		}
		rows = append(rows, r...)
	}
	printTable(os.Stdout, rows, s.sandbox)
	return nil
}

func printTable(w *os.File, rows []row, sandbox string) {
	fmt.Fprintf(w, "| measure | baseline in the same run | Custody | ratio | target | met |\n|---|---|---|---|---|---|\n")
	for _, r := range rows {
		met := "yes"
		if !r.met {
			met = "NO"
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s |\n", r.measure, r.baseline, r.subject, r.ratio, r.target, met)
	}
	fmt.Fprintf(w, "\nLocal nodes: %s. %d CPUs; each figure is the median of the rounds (the million row runs once).\n", sandbox, runtime.NumCPU())
}

// median returns the median of xs (the mean of the middle two for an even
// count).
func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n == 0 {
		return 0
	}
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// rate formats a rate with a thousands separator.
func rate(v float64, unit string) string {
	n := int64(v + 0.5)
	s := fmt.Sprint(n)
	var out []byte
	for i := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	return string(out) + unit
}
