package node

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"custody/node/sandbox"
)

// Spec is one process to run: a task, or a pool's start task.
type Spec struct {
	// Key identifies the run to the runner (unique among running specs).
	Key string
	// Dir is the task directory; the runner creates Dir/wd (the working
	// directory) and writes Dir/stdout.txt and Dir/stderr.txt.
	Dir string
	// CommandLine runs through /bin/sh -c.
	CommandLine string
	// Env is the complete environment of the process (NAME=value). The
	// agent's own environment is never inherited.
	Env []string
	// MaxWallClock kills the process tree after this long (0: unlimited).
	MaxWallClock time.Duration
	// Sandbox, when set, runs the process in a sandbox (package sandbox) as
	// the user it names; nil runs a plain process group as the agent's own
	// user (only with --unsafe-shared-host-nodes).
	Sandbox *SandboxSpec
}

// SandboxSpec is how a run is sandboxed.
type SandboxSpec struct {
	Node *sandbox.Node
	// UID and GID are the host ids of the run's user; AdminUID is the host
	// id of root in its user namespace, which it is with Admin.
	UID, GID, AdminUID int
	Admin              bool
	// Binds are the host directories shown read-write (the node's root),
	// ReadOnlyBinds those shown read-only (the certificates).
	Binds, ReadOnlyBinds []string
	Hostname             string
}

// Result is how a run ended.
type Result struct {
	ExitCode  int
	StartTime time.Time
	EndTime   time.Time
	// TimedOut is set when MaxWallClock killed the process tree.
	TimedOut bool
	// Killed is set when Kill ended the run (terminate, node lock, removal).
	Killed bool
	// StartError is set when the process could not be started at all.
	StartError string
	// DiskExceeded is set when the run's files outgrew its disk budget and
	// it was killed; OOMKilled when the kernel killed one of its processes
	// for exceeding its memory limit.
	DiskExceeded bool
	OOMKilled    bool
}

// Failed reports whether the run counts as failed (non-zero exit, timeout,
// start failure).
func (r Result) Failed() bool {
	return r.StartError != "" || r.TimedOut || r.ExitCode != 0 || r.DiskExceeded || r.OOMKilled
}

// Process is a running task process: the leader of its own process group.
type Process struct {
	Spec Spec
	Pid  int

	start  time.Time
	done   chan struct{}
	result Result

	mu       sync.Mutex
	killed   bool
	timedOut bool
	diskFull bool
	timer    *time.Timer

	// sb is the sandboxed process (nil for a plain process group);
	// diskLimit is its disk budget (0: none).
	sb        *sandbox.Process
	diskLimit int64
}

// Done is closed when the process has exited and its group is gone.
func (p *Process) Done() <-chan struct{} { return p.done }

// Wait waits for the process and returns its result.
func (p *Process) Wait() Result {
	<-p.done
	return p.result
}

// Kill kills the whole process tree. The result reports Killed. Killing a
// finished process does nothing.
func (p *Process) Kill() { p.end(&p.killed) }

// wallClock kills the run because it outlived its maxWallClockTime.
func (p *Process) wallClock() { p.end(&p.timedOut) }

// overDisk kills the run because its files outgrew its disk budget.
func (p *Process) overDisk() { p.end(&p.diskFull) }

// end records why the run is being ended (under p.mu) and kills its every
// process: a sandbox's init and control group, or a plain run's process
// group. A finished run is left alone.
func (p *Process) end(why *bool) {
	p.mu.Lock()
	select {
	case <-p.done:
		p.mu.Unlock()
		return
	default:
	}
	*why = true
	p.mu.Unlock()
	if p.sb != nil {
		p.sb.Kill()
	}
	killGroup(p.Pid)
}

func killGroup(pgid int) {
	if pgid > 0 {
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
	}
}

// Runner starts task processes and reaps them. It owns every child of the
// process it runs in: its reaper calls wait4(-1), so the process must not
// start children by other means (os/exec would lose their exit status).
// With EnableSubreaper, orphaned grandchildren of tasks are re-parented to
// this process and reaped too, so killed trees leave no zombies.
type Runner struct {
	mu    sync.Mutex
	seq   uint64
	procs map[int]*Process
	kick  chan struct{}
	once  sync.Once
}

// NewRunner returns a Runner and starts its reaper and its disk watch.
func NewRunner() *Runner {
	r := &Runner{procs: map[int]*Process{}, kick: make(chan struct{}, 1)}
	go r.reap()
	go r.watchDisk()
	return r
}

// DiskCheckInterval is how often the disk use of sandboxed runs is
// measured. A run can write past its budget for at most this long (and no
// single file past it: RLIMIT_FSIZE); then it is killed and fails.
var DiskCheckInterval = 250 * time.Millisecond

func (r *Runner) watchDisk() {
	for range time.Tick(DiskCheckInterval) {
		r.mu.Lock()
		var ps []*Process
		for _, p := range r.procs {
			if p.diskLimit > 0 {
				ps = append(ps, p)
			}
		}
		r.mu.Unlock()
		for _, p := range ps {
			if diskUsage(p.Spec.Dir, p.diskLimit) > p.diskLimit {
				p.overDisk()
			}
		}
	}
}

// diskUsage adds up the allocated size of the files under dir, stopping
// once it passes limit.
func diskUsage(dir string, limit int64) int64 {
	var total int64
	filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return nil
		}
		if st, ok := info.Sys().(*syscall.Stat_t); ok {
			total += max(st.Blocks*512, info.Size())
		} else {
			total += info.Size()
		}
		if total > limit {
			return filepath.SkipAll
		}
		return nil
	})
	return total
}

// EnableSubreaper makes the calling process the reaper of orphaned
// descendants (PR_SET_CHILD_SUBREAPER), so a task's background processes
// are not handed to PID 1, which may never reap them.
func EnableSubreaper() error {
	return unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
}

// Running returns the number of processes running.
func (r *Runner) Running() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.procs)
}

// Start starts spec: its directories are created, stdout and stderr go to
// files beside the working directory, and the command line runs through
// /bin/sh -c as the leader of a new process group, killed if the agent
// dies (Pdeathsig).
func (r *Runner) Start(spec Spec) (*Process, error) {
	wd := filepath.Join(spec.Dir, "wd")
	if sb := spec.Sandbox; sb != nil {
		// The run's directory belongs to its user, and to no one else. It
		// is made with its final mode (each change of an inode costs a
		// metadata write); one left by an earlier run gets it again.
		if err := os.MkdirAll(filepath.Dir(spec.Dir), 0o755); err != nil {
			return nil, fmt.Errorf("create working directory: %w", err)
		}
		for _, d := range []string{spec.Dir, wd} {
			err := os.Mkdir(d, 0o700)
			if errors.Is(err, os.ErrExist) {
				err = os.Chmod(d, 0o700)
			}
			if err != nil {
				return nil, fmt.Errorf("create working directory: %w", err)
			}
			if err := os.Chown(d, sb.UID, sb.GID); err != nil {
				return nil, err
			}
		}
	} else if err := os.MkdirAll(wd, 0o755); err != nil {
		return nil, fmt.Errorf("create working directory: %w", err)
	}
	stdout, err := os.OpenFile(filepath.Join(spec.Dir, "stdout.txt"), os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, err
	}
	defer stdout.Close()
	stderr, err := os.OpenFile(filepath.Join(spec.Dir, "stderr.txt"), os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, err
	}
	defer stderr.Close()
	if spec.Sandbox != nil {
		return r.startSandboxed(spec, wd, stdout, stderr)
	}
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return nil, err
	}
	defer devnull.Close()

	attr := &syscall.ProcAttr{
		Dir:   wd,
		Env:   spec.Env,
		Files: []uintptr{devnull.Fd(), stdout.Fd(), stderr.Fd()},
		Sys:   &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL},
	}
	p := &Process{Spec: spec, done: make(chan struct{})}
	r.mu.Lock()
	p.start = time.Now()
	pid, err := syscall.ForkExec("/bin/sh", []string{"/bin/sh", "-c", spec.CommandLine}, attr)
	if err != nil {
		r.mu.Unlock()
		return nil, fmt.Errorf("start /bin/sh: %w", err)
	}
	p.Pid = pid
	r.procs[pid] = p
	r.mu.Unlock()
	if spec.MaxWallClock > 0 {
		p.mu.Lock()
		p.timer = time.AfterFunc(spec.MaxWallClock, p.wallClock)
		p.mu.Unlock()
	}
	select {
	case r.kick <- struct{}{}:
	default:
	}
	return p, nil
}

func (r *Runner) startSandboxed(spec Spec, wd string, stdout, stderr *os.File) (*Process, error) {
	sb := spec.Sandbox
	for _, f := range []*os.File{stdout, stderr} {
		if err := f.Chown(sb.UID, sb.GID); err != nil {
			return nil, err
		}
	}
	p := &Process{Spec: spec, done: make(chan struct{}), diskLimit: sb.Node.Limits().DiskBytes}
	// The runner's lock is held until the init is registered (so the
	// reaper cannot collect it unknown), not while its sandbox is built:
	// starts run in parallel.
	r.mu.Lock()
	locked := true
	r.seq++
	key := "run-" + strconv.FormatUint(r.seq, 10)
	p.start = time.Now()
	_, err := sb.Node.Start(sandbox.Task{
		Key: key, Argv: []string{"/bin/sh", "-c", spec.CommandLine}, Env: spec.Env,
		Dir: wd, Stdout: stdout, Stderr: stderr, Binds: sb.Binds, ReadOnlyBinds: sb.ReadOnlyBinds,
		UID: sb.UID, GID: sb.GID, AdminUID: sb.AdminUID, Admin: sb.Admin, Hostname: sb.Hostname,
	}, func(pid int, sp *sandbox.Process) {
		p.Pid, p.sb = pid, sp
		r.procs[pid] = p
		r.mu.Unlock()
		locked = false
		select {
		case r.kick <- struct{}{}:
		default:
		}
	})
	if locked {
		r.mu.Unlock()
	}
	if err != nil {
		if p.sb != nil {
			// Killed; the reaper collects it and releases what it held.
			p.mu.Lock()
			p.killed = true
			p.mu.Unlock()
		}
		return nil, err
	}
	if spec.MaxWallClock > 0 {
		p.mu.Lock()
		p.timer = time.AfterFunc(spec.MaxWallClock, p.wallClock)
		p.mu.Unlock()
	}
	return p, nil
}

// reap waits for any child. Tracked task leaders complete their Process;
// anything else is an orphan re-parented to us and is just reaped.
func (r *Runner) reap() {
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, 0, nil)
		if err != nil {
			if errors.Is(err, syscall.EINTR) {
				continue
			}
			// No children: wait until one is started.
			select {
			case <-r.kick:
			case <-time.After(time.Second):
			}
			continue
		}
		r.mu.Lock()
		p := r.procs[pid]
		delete(r.procs, pid)
		r.mu.Unlock()
		if p == nil {
			continue
		}
		end := time.Now()
		// The leader is gone; anything it left in its group goes too.
		killGroup(pid)
		oom := false
		if p.sb != nil {
			oom = p.sb.OOMKilled(ws)
			p.sb.Release()
			// A run that ended by itself between two disk checks is
			// measured once more.
			if p.diskLimit > 0 && diskUsage(p.Spec.Dir, p.diskLimit) > p.diskLimit {
				p.mu.Lock()
				p.diskFull = true
				p.mu.Unlock()
			}
		}
		p.mu.Lock()
		if p.timer != nil {
			p.timer.Stop()
		}
		code := ws.ExitStatus()
		if ws.Signaled() {
			code = 128 + int(ws.Signal())
		}
		p.result = Result{ExitCode: code, StartTime: p.start, EndTime: end, TimedOut: p.timedOut,
			Killed: p.killed && !p.timedOut && !p.diskFull, DiskExceeded: p.diskFull, OOMKilled: oom}
		close(p.done)
		p.mu.Unlock()
	}
}

// Env builds a task environment: a minimal base (PATH, HOME, LANG), then
// vars, then the settings the task asked for, sorted for reproducibility.
func Env(vars map[string]string, settings map[string]string) []string {
	m := map[string]string{
		"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"LANG": "C.UTF-8",
	}
	if home := vars["AZ_BATCH_TASK_WORKING_DIR"]; home != "" {
		m["HOME"] = home
	}
	for k, v := range vars {
		m[k] = v
	}
	for k, v := range settings {
		m[k] = v
	}
	out := make([]string, 0, len(m))
	for k, v := range m {
		if k == "" || strings.ContainsAny(k, "=\x00") || strings.Contains(v, "\x00") {
			continue
		}
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}
