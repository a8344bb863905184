package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/batch/azbatch"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/batch/armbatch/v3"
	"github.com/Azure/azure-sdk-for-go/sdk/security/keyvault/azkeys"
)

// ---- vault UnwrapKey ----

const unwrapGoroutines = 8

// unwrapper is a vault holding an imported RSA-2048 key, ready for
// UnwrapKey calls through one shared azkeys client.
type unwrapper struct {
	priv    *rsa.PrivateKey
	wrapped []byte
	unwrap  func(context.Context) error
}

func (b *bench) newUnwrapper(ctx context.Context, priv *rsa.PrivateKey) (*unwrapper, error) {
	if err := b.vaultWith(ctx, "benchkv", b.o.rbac); err != nil {
		return nil, err
	}
	kc, err := b.keysClient("benchkv")
	if err != nil {
		return nil, err
	}
	res, err := kc.ImportKey(ctx, "unwrap", azkeys.ImportKeyParameters{Key: &azkeys.JSONWebKey{
		Kty: to.Ptr(azkeys.KeyTypeRSA), N: priv.N.Bytes(), E: big.NewInt(int64(priv.E)).Bytes(), D: priv.D.Bytes(),
		P: priv.Primes[0].Bytes(), Q: priv.Primes[1].Bytes(),
		DP: priv.Precomputed.Dp.Bytes(), DQ: priv.Precomputed.Dq.Bytes(), QI: priv.Precomputed.Qinv.Bytes(),
	}}, nil)
	if err != nil {
		return nil, fmt.Errorf("import key: %w", err)
	}
	version := res.Key.KID.Version()
	dek := bytes.Repeat([]byte{7}, 32)
	wrapped, err := rsa.EncryptOAEP(sha256.New(), rand.Reader, &priv.PublicKey, dek, nil)
	if err != nil {
		return nil, err
	}
	u := &unwrapper{priv: priv, wrapped: wrapped}
	u.unwrap = func(ctx context.Context) error {
		r, err := kc.UnwrapKey(ctx, "unwrap", version, azkeys.KeyOperationParameters{Algorithm: to.Ptr(azkeys.EncryptionAlgorithmRSAOAEP256), Value: wrapped}, nil)
		if err != nil {
			return err
		}
		if !bytes.Equal(r.Result, dek) {
			return errors.New("UnwrapKey returned a different key")
		}
		return nil
	}
	for range 20 { // the challenge, the token, connections
		if err := u.unwrap(ctx); err != nil {
			return nil, fmt.Errorf("unwrap: %w", err)
		}
	}
	return u, nil
}

// baseline runs crypto/rsa DecryptOAEP on one goroutine per core for d.
func (u *unwrapper) baseline(ctx context.Context, d time.Duration) float64 {
	return parallelRate(ctx, runtime.GOMAXPROCS(0), d, func(context.Context) error {
		_, err := rsa.DecryptOAEP(sha256.New(), nil, u.priv, u.wrapped, nil)
		return err
	})
}

// subject runs UnwrapKey on unwrapGoroutines goroutines for d and returns
// the calls a second and the server's and this process's CPU time a call.
func (b *bench) subject(ctx context.Context, u *unwrapper, d time.Duration) (rate, serverCPU, clientCPU float64, err error) {
	s0, c0 := b.s.cpuTime(), selfCPUTime()
	v := parallelRate(ctx, unwrapGoroutines, d, u.unwrap)
	s1, c1 := b.s.cpuTime(), selfCPUTime()
	if v < 0 {
		return 0, 0, 0, fmt.Errorf("unwrap: %w", lastErr.Load().(error))
	}
	calls := v * d.Seconds()
	return v, float64((s1 - s0).Microseconds()) / calls, float64((c1 - c0).Microseconds()) / calls, nil
}

func newRSAKey() (*rsa.PrivateKey, error) {
	priv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	priv.Precompute()
	return priv, nil
}

func (b *bench) vaultRow(ctx context.Context) ([]row, error) {
	// The same key on both sides: imported into the vault, used directly
	// by the baseline.
	priv, err := newRSAKey()
	if err != nil {
		return nil, err
	}
	u, err := b.newUnwrapper(ctx, priv)
	if err != nil {
		return nil, err
	}
	var base, subj []float64
	for r := range b.o.rounds {
		base = append(base, u.baseline(ctx, b.o.duration))
		stopProfile := b.profileIf(ctx, r, "vault-unwrap", b.o.duration)
		v, scpu, ccpu, err := b.subject(ctx, u, b.o.duration)
		if perr := stopProfile(); err == nil {
			err = perr
		}
		if err != nil {
			return nil, err
		}
		subj = append(subj, v)
		b.logf("vault round %d: crypto/rsa %.0f/s (%.0f µs a call on one core), UnwrapKey %.0f/s; CPU a call: server %.0f µs, client %.0f µs",
			r+1, base[r], float64(runtime.GOMAXPROCS(0))*1e6/base[r], v, scpu, ccpu)
	}
	mb, ms := median(base), median(subj)
	auth := ""
	if b.o.rbac {
		auth = " (RBAC vault)"
	}
	return []row{{
		measure:  fmt.Sprintf("vault UnwrapKey RSA-OAEP-256, RSA-2048, %d goroutines sharing one azkeys client%s", unwrapGoroutines, auth),
		baseline: "crypto/rsa DecryptOAEP, one goroutine per core: " + rate(mb, "/s"),
		subject:  rate(ms, "/s"),
		ratio:    fmt.Sprintf("%.2f", ms/mb),
		target:   "at least 0.80, and at least 2,000/s",
		met:      ms/mb >= 0.80 && ms >= 2000,
	}}, nil
}

// compareVault runs the vault row's subject on two servers alternately
// (a, b, a, b, ...), with the baseline between, and reports both: how a
// change to the server shows, measured fairly on a busy machine.
func compareVault(ctx context.Context, a, b *bench) ([]row, error) {
	priv, err := newRSAKey()
	if err != nil {
		return nil, err
	}
	ua, err := a.newUnwrapper(ctx, priv)
	if err != nil {
		return nil, err
	}
	ub, err := b.newUnwrapper(ctx, priv)
	if err != nil {
		return nil, err
	}
	var base, ra, rb, sa, sb, ca, cb []float64
	for r := range a.o.rounds {
		base = append(base, ua.baseline(ctx, a.o.duration))
		for i, side := range []struct {
			b *bench
			u *unwrapper
		}{{a, ua}, {b, ub}} {
			v, scpu, ccpu, err := side.b.subject(ctx, side.u, a.o.duration)
			if err != nil {
				return nil, err
			}
			if i == 0 {
				ra, sa, ca = append(ra, v), append(sa, scpu), append(ca, ccpu)
			} else {
				rb, sb, cb = append(rb, v), append(sb, scpu), append(cb, ccpu)
			}
		}
		a.logf("compare round %d: crypto/rsa %.0f/s; A %.0f/s (server %.0f µs, client %.0f µs a call); B %.0f/s (server %.0f µs, client %.0f µs a call)",
			r+1, base[r], ra[r], sa[r], ca[r], rb[r], sb[r], cb[r])
	}
	mb := median(base)
	side := func(name string, rates, scpu, ccpu []float64) row {
		m := median(rates)
		return row{
			measure:  fmt.Sprintf("%s: vault UnwrapKey, %d goroutines, one azkeys client (server CPU %.0f µs a call, client %.0f µs)", name, unwrapGoroutines, median(scpu), median(ccpu)),
			baseline: "crypto/rsa: " + rate(mb, "/s"),
			subject:  rate(m, "/s"),
			ratio:    fmt.Sprintf("%.2f", m/mb),
			target:   "at least 0.80, and at least 2,000/s",
			met:      m/mb >= 0.80 && m >= 2000,
		}
	}
	return []row{side("A ("+a.s.binary+")", ra, sa, ca), side("B ("+b.s.binary+")", rb, sb, cb)}, nil
}

var lastErr atomic.Value

// parallelRate runs f on n goroutines for d and returns the calls a second,
// or -1 after an error (kept in lastErr).
func parallelRate(ctx context.Context, n int, d time.Duration, f func(context.Context) error) float64 {
	var count atomic.Int64
	var failed atomic.Bool
	start := time.Now()
	deadline := start.Add(d)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			for time.Now().Before(deadline) && !failed.Load() {
				if err := f(ctx); err != nil {
					lastErr.Store(err)
					failed.Store(true)
					return
				}
				count.Add(1)
			}
		})
	}
	wg.Wait()
	if failed.Load() {
		return -1
	}
	return float64(count.Load()) / time.Since(start).Seconds()
}

// profileIf takes a CPU profile of the server over d during the last round
// when profiles are asked for; the returned function waits for it.
func (b *bench) profileIf(ctx context.Context, round int, name string, d time.Duration) func() error {
	if b.o.profileDir == "" || round != b.o.rounds-1 {
		return func() error { return nil }
	}
	done := make(chan error, 1)
	file := filepath.Join(b.o.profileDir, name+".pprof")
	go func() { done <- b.s.profile(ctx, d, file) }()
	// This process's own profile, over the same time.
	clientFile := filepath.Join(b.o.profileDir, name+"-client.pprof")
	f, err := os.Create(clientFile)
	if err != nil {
		return func() error { <-done; return err }
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return func() error { <-done; return err }
	}
	return func() error {
		pprof.StopCPUProfile()
		cerr := f.Close()
		err := <-done
		if err == nil {
			err = cerr
		}
		if err == nil {
			b.logf("profiles of the server and of this client: %s, %s", file, clientFile)
		}
		return err
	}
}

// ---- tasks ----

const (
	trueTasks    = 400
	trueCalls    = 4
	execRoutines = 4
)

// taskPool returns the client of the account whose pool "p" has 2 idle
// local nodes of 2 slots, creating them the first time.
func (b *bench) taskPool(ctx context.Context) (*azbatch.Client, error) {
	if b.tasks != nil {
		return b.tasks, nil
	}
	a, err := b.account(ctx, "benchtasks", false)
	if err != nil {
		return nil, err
	}
	c, err := b.batchClient(a)
	if err != nil {
		return nil, err
	}
	if err := pool(ctx, c, "p", 2, 2); err != nil {
		return nil, err
	}
	b.tasks = c
	return c, nil
}

func (b *bench) tasksRow(ctx context.Context) ([]row, error) {
	c, err := b.taskPool(ctx)
	if err != nil {
		return nil, err
	}
	truePath, err := exec.LookPath("true")
	if err != nil {
		return nil, err
	}
	var base, subj []float64
	for r := range b.o.rounds {
		v, err := execRate(truePath, trueTasks, execRoutines)
		if err != nil {
			return nil, err
		}
		base = append(base, v)
		stopProfile := b.profileIf(ctx, r, "tasks", 2*time.Second)
		v, err = runTrueTasks(ctx, c, "true-"+strconv.Itoa(r))
		if perr := stopProfile(); err == nil {
			err = perr
		}
		if err != nil {
			return nil, err
		}
		subj = append(subj, v)
		b.logf("tasks round %d: os/exec %.0f/s, tasks %.0f/s", r+1, base[r], v)
	}
	mb, ms := median(base), median(subj)
	return []row{{
		measure:  fmt.Sprintf("%d tasks running `true` (%d AddTaskCollection calls of %d), 2 local nodes x 2 slots, first creationTime to last endTime by the server's times", trueTasks, trueCalls, trueTasks/trueCalls),
		baseline: fmt.Sprintf("os/exec start-and-reap of `true` on %d goroutines: %s", execRoutines, rate(mb, "/s")),
		subject:  rate(ms, "/s"),
		ratio:    fmt.Sprintf("%.2f", ms/mb),
		target:   "at least 0.60 (sandbox on)",
		met:      ms/mb >= 0.60,
	}}, nil
}

// compareTasks runs the tasks row's subject on two servers (a's binary and
// b's) alternately, with the os/exec baseline before each pair, and reports
// both beside the one baseline.
func compareTasks(ctx context.Context, a, b *bench) ([]row, error) {
	ca, err := a.taskPool(ctx)
	if err != nil {
		return nil, err
	}
	cb, err := b.taskPool(ctx)
	if err != nil {
		return nil, err
	}
	truePath, err := exec.LookPath("true")
	if err != nil {
		return nil, err
	}
	var base, ra, rb []float64
	for r := range a.o.rounds {
		v, err := execRate(truePath, trueTasks, execRoutines)
		if err != nil {
			return nil, err
		}
		base = append(base, v)
		if v, err = runTrueTasks(ctx, ca, "true-"+strconv.Itoa(r)); err != nil {
			return nil, fmt.Errorf("A: %w", err)
		}
		ra = append(ra, v)
		if v, err = runTrueTasks(ctx, cb, "true-"+strconv.Itoa(r)); err != nil {
			return nil, fmt.Errorf("B: %w", err)
		}
		rb = append(rb, v)
		a.logf("compare tasks round %d: os/exec %.0f/s; A %.0f/s; B %.0f/s", r+1, base[r], ra[r], rb[r])
	}
	mb := median(base)
	side := func(name string, rates []float64) row {
		m := median(rates)
		return row{
			measure:  fmt.Sprintf("%s: %d `true` tasks, 2 local nodes x 2 slots", name, trueTasks),
			baseline: fmt.Sprintf("os/exec on %d goroutines: %s", execRoutines, rate(mb, "/s")),
			subject:  rate(m, "/s"),
			ratio:    fmt.Sprintf("%.2f", m/mb),
			target:   "at least 0.60 (sandbox on)",
			met:      m/mb >= 0.60,
		}
	}
	return []row{side("A ("+a.s.binary+")", ra), side("B ("+b.s.binary+")", rb)}, nil
}

// execRate starts and reaps path n times on g goroutines and returns the
// processes a second.
func execRate(path string, n, g int) (float64, error) {
	var next atomic.Int64
	var firstErr atomic.Value
	start := time.Now()
	var wg sync.WaitGroup
	for range g {
		wg.Go(func() {
			for next.Add(1) <= int64(n) {
				if err := exec.Command(path).Run(); err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err, _ := firstErr.Load().(error); err != nil {
		return 0, err
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

// runTrueTasks adds trueTasks `true` tasks to a new job in trueCalls calls,
// waits until all have completed, and returns trueTasks over the time from
// the first creationTime to the last endTime.
func runTrueTasks(ctx context.Context, c *azbatch.Client, job string) (float64, error) {
	if _, err := c.CreateJob(ctx, azbatch.CreateJobContent{ID: to.Ptr(job), PoolInfo: &azbatch.PoolInfo{PoolID: to.Ptr("p")}}, nil); err != nil {
		return 0, fmt.Errorf("create job: %w", err)
	}
	per := trueTasks / trueCalls
	for i := 0; i < trueTasks; i += per {
		g := azbatch.TaskGroup{}
		for j := i; j < i+per; j++ {
			g.Value = append(g.Value, azbatch.CreateTaskContent{ID: to.Ptr("t" + strconv.Itoa(j)), CommandLine: to.Ptr("true")})
		}
		if err := addCollection(ctx, c, job, g); err != nil {
			return 0, err
		}
	}
	deadline := time.Now().Add(5 * time.Minute)
	for {
		tc, err := c.GetJobTaskCounts(ctx, job, nil)
		if err != nil {
			return 0, fmt.Errorf("task counts: %w", err)
		}
		if *tc.TaskCounts.Completed == trueTasks {
			if f := *tc.TaskCounts.Failed; f > 0 {
				return 0, fmt.Errorf("%d of the `true` tasks failed", f)
			}
			break
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("%d of %d tasks completed after 5 minutes", *tc.TaskCounts.Completed, trueTasks)
		}
		time.Sleep(50 * time.Millisecond)
	}
	var first, last time.Time
	n := 0
	pg := c.NewListTasksPager(job, &azbatch.ListTasksOptions{SelectParam: []string{"id", "creationTime", "executionInfo"}})
	for pg.More() {
		page, err := pg.NextPage(ctx)
		if err != nil {
			return 0, fmt.Errorf("list tasks: %w", err)
		}
		for _, t := range page.Value {
			if t.CreationTime == nil || t.ExecutionInfo == nil || t.ExecutionInfo.EndTime == nil {
				return 0, fmt.Errorf("task %s has no creationTime or endTime", *t.ID)
			}
			if first.IsZero() || t.CreationTime.Before(first) {
				first = *t.CreationTime
			}
			if t.ExecutionInfo.EndTime.After(last) {
				last = *t.ExecutionInfo.EndTime
			}
			n++
		}
	}
	if n != trueTasks {
		return 0, fmt.Errorf("listed %d tasks, want %d", n, trueTasks)
	}
	return float64(trueTasks) / last.Sub(first).Seconds(), nil
}

func addCollection(ctx context.Context, c *azbatch.Client, job string, g azbatch.TaskGroup) error {
	res, err := c.CreateTaskCollection(ctx, job, g, nil)
	if err != nil {
		return fmt.Errorf("add task collection: %w", err)
	}
	for _, r := range res.Value {
		if *r.Status != azbatch.TaskAddStatusSuccess {
			return fmt.Errorf("add task %s: %s", *r.TaskID, *r.Status)
		}
	}
	return nil
}

// ---- AddTaskCollection, customer-managed vs platform key ----

const (
	cmkCalls     = 50
	cmkCallTasks = 100
)

func (b *bench) cmkRow(ctx context.Context) ([]row, error) {
	if err := b.vault(ctx, "benchcmk"); err != nil {
		return nil, err
	}
	kc, err := b.keysClient("benchcmk")
	if err != nil {
		return nil, err
	}
	k, err := kc.CreateKey(ctx, "cmk", azkeys.CreateKeyParameters{Kty: to.Ptr(azkeys.KeyTypeRSA), KeySize: to.Ptr[int32](2048)}, nil)
	if err != nil {
		return nil, fmt.Errorf("create key: %w", err)
	}
	plat, err := b.account(ctx, "benchplatform", false)
	if err != nil {
		return nil, err
	}
	cmk, err := b.account(ctx, "benchcmk", true)
	if err != nil {
		return nil, err
	}
	if err := b.grant(ctx, "benchcmk", *cmk.Identity.PrincipalID); err != nil {
		return nil, err
	}
	if _, err := b.accounts.Update(ctx, group, "benchcmk", armbatch.AccountUpdateParameters{Properties: &armbatch.AccountUpdateProperties{
		Encryption: &armbatch.EncryptionProperties{KeySource: to.Ptr(armbatch.KeySourceMicrosoftKeyVault),
			KeyVaultProperties: &armbatch.KeyVaultProperties{KeyIdentifier: to.Ptr(string(*k.Key.KID))}},
	}}, nil); err != nil {
		return nil, fmt.Errorf("customer-managed key on the account: %w", err)
	}
	clients := make([]*azbatch.Client, 2) // platform, customer key
	for i, a := range []armbatch.Account{plat, cmk} {
		if clients[i], err = b.batchClient(a); err != nil {
			return nil, err
		}
		// A pool that does not exist: the tasks stay queued, so this
		// measures submission alone.
		if _, err := clients[i].CreateJob(ctx, azbatch.CreateJobContent{ID: to.Ptr("submit"), PoolInfo: &azbatch.PoolInfo{PoolID: to.Ptr("none")}}, nil); err != nil {
			return nil, fmt.Errorf("create job: %w", err)
		}
	}
	call := 0
	add := func(c *azbatch.Client) (time.Duration, error) {
		call++
		g := azbatch.TaskGroup{Value: make([]azbatch.CreateTaskContent, cmkCallTasks)}
		for k := range g.Value {
			g.Value[k] = azbatch.CreateTaskContent{
				ID:                  to.Ptr("c" + strconv.Itoa(call) + "-" + strconv.Itoa(k)),
				CommandLine:         to.Ptr("/bin/sh -c 'echo task " + strconv.Itoa(k) + "'"),
				EnvironmentSettings: []azbatch.EnvironmentSetting{{Name: to.Ptr("INDEX"), Value: to.Ptr(strconv.Itoa(k))}},
			}
		}
		start := time.Now()
		err := addCollection(ctx, c, "submit", g)
		return time.Since(start), err
	}
	for range 3 { // connections, tokens, the unwrapped DEK
		for _, c := range clients {
			if _, err := add(c); err != nil {
				return nil, err
			}
		}
	}
	var base, subj []float64
	for r := range b.o.rounds {
		stopProfile := b.profileIf(ctx, r, "cmk", time.Second)
		var spent [2]time.Duration
		for range cmkCalls {
			for i, c := range clients { // platform, then customer key: alternately
				d, err := add(c)
				if err != nil {
					return nil, err
				}
				spent[i] += d
			}
		}
		if err := stopProfile(); err != nil {
			return nil, err
		}
		base = append(base, cmkCalls*cmkCallTasks/spent[0].Seconds())
		subj = append(subj, cmkCalls*cmkCallTasks/spent[1].Seconds())
		b.logf("cmk round %d: platform %.0f tasks/s, customer key %.0f tasks/s", r+1, base[r], subj[r])
	}
	mb, ms := median(base), median(subj)
	return []row{{
		measure:  fmt.Sprintf("AddTaskCollection (%d tasks a call), CMK account vs platform-key account", cmkCallTasks),
		baseline: "platform " + rate(mb, " tasks/s"),
		subject:  "CMK " + rate(ms, " tasks/s"),
		ratio:    fmt.Sprintf("%.2f", ms/mb),
		target:   "keep at least 0.95",
		met:      ms/mb >= 0.95,
	}}, nil
}

// ---- submit-to-start ----

const latencyTasks = 5

func (b *bench) latencyRow(ctx context.Context) ([]row, error) {
	c, err := b.taskPool(ctx)
	if err != nil {
		return nil, err
	}
	if _, err := c.CreateJob(ctx, azbatch.CreateJobContent{ID: to.Ptr("latency"), PoolInfo: &azbatch.PoolInfo{PoolID: to.Ptr("p")}}, nil); err != nil {
		return nil, fmt.Errorf("create job: %w", err)
	}
	var lat []float64
	for r := range b.o.rounds {
		for i := range latencyTasks {
			id := "l" + strconv.Itoa(r) + "-" + strconv.Itoa(i)
			if _, err := c.CreateTask(ctx, "latency", azbatch.CreateTaskContent{ID: to.Ptr(id), CommandLine: to.Ptr("true")}, nil); err != nil {
				return nil, fmt.Errorf("create task: %w", err)
			}
			deadline := time.Now().Add(time.Minute)
			for {
				t, err := c.GetTask(ctx, "latency", id, nil)
				if err != nil {
					return nil, fmt.Errorf("get task: %w", err)
				}
				if *t.State == azbatch.TaskStateCompleted {
					if t.ExecutionInfo == nil || t.ExecutionInfo.StartTime == nil {
						return nil, fmt.Errorf("task %s completed without a startTime", id)
					}
					ms := float64(t.ExecutionInfo.StartTime.Sub(*t.CreationTime).Microseconds()) / 1000
					lat = append(lat, ms)
					b.logf("latency %s: %.1f ms", id, ms)
					break
				}
				if time.Now().After(deadline) {
					return nil, fmt.Errorf("task %s not completed after a minute", id)
				}
				time.Sleep(5 * time.Millisecond)
			}
		}
	}
	m := median(lat)
	return []row{{
		measure:  "submit-to-start, one task on an idle node (creationTime to startTime)",
		baseline: "-",
		subject:  fmt.Sprintf("%.1f ms median", m),
		ratio:    "-",
		target:   "keep under 100 ms",
		met:      m < 100,
	}}, nil
}
