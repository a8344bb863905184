package server

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"custody/batch"
	"custody/compute"
	"custody/node/sandbox"
	"custody/sqlstore"
	"custody/tlsca"
)

// checkNodeRoot fills in the node root and refuses one that would put task
// files next to the server's secrets; unless local nodes may run unsafely
// (or are off), it checks that this host can sandbox tasks.
func checkNodeRoot(cfg *Config) error {
	if cfg.DisableLocalNodes {
		return nil
	}
	if cfg.NodeRoot == "" {
		cfg.NodeRoot = DefaultNodeRoot(cfg.DataDir)
	}
	root, err := filepath.Abs(cfg.NodeRoot)
	if err != nil {
		return fmt.Errorf("--node-root: %w", err)
	}
	data, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return fmt.Errorf("--data-dir: %w", err)
	}
	if within(root, data) || within(data, root) {
		return fmt.Errorf("--node-root %s and --data-dir %s must not contain one another: tasks' files must be kept apart from the server's secrets", root, data)
	}
	cfg.NodeRoot = root
	if err := os.MkdirAll(root, 0o711); err != nil {
		return fmt.Errorf("--node-root: %w", err)
	}
	if cfg.UnsafeSharedHostNodes {
		return nil
	}
	if _, err := sandbox.Probe(); err != nil {
		return fmt.Errorf("local nodes cannot sandbox their tasks on this host: %v.\n"+
			"Without a sandbox, a task could read this server's secrets (root key, admin credentials, database) and other accounts' data. Either fix the cause above (run as root on Linux with user, mount and PID namespaces and writable control groups), "+
			"or pass --disable-local-nodes and join `custody node` agents from hosts that can, or pass --unsafe-shared-host-nodes to run tasks unsandboxed anyway", err)
	}
	return nil
}

// within reports whether path is dir or inside it.
func within(path, dir string) bool {
	rel, err := filepath.Rel(dir, path)
	return err == nil && (rel == "." || (rel != ".." && !strings.HasPrefix(rel, "../")))
}

// localLauncher starts nodes as `custody node` child processes. Each gets
// its credential through an inherited pipe (never the environment or a
// file, which its tasks could read) and, with the sandbox, a mount
// namespace of its own.
type localLauncher struct {
	s *Server
}

func (l localLauncher) Launch(account, poolID, nodeID, credential string) (func(), <-chan struct{}, error) {
	cmdline := l.s.cfg.NodeCommand
	if len(cmdline) == 0 {
		exe, err := os.Executable()
		if err != nil {
			return nil, nil, err
		}
		cmdline = []string{exe, "node"}
	}
	root := filepath.Join(l.s.cfg.NodeRoot, account, poolID, nodeID)
	for _, d := range []string{filepath.Dir(filepath.Dir(root)), filepath.Dir(root)} {
		if err := os.MkdirAll(d, 0o711); err != nil {
			return nil, nil, fmt.Errorf("node root: %w", err)
		}
	}
	ca, err := os.ReadFile(filepath.Join(l.s.cfg.DataDir, tlsca.CAFile))
	if err != nil {
		return nil, nil, err
	}
	args := append(cmdline[1:len(cmdline):len(cmdline)],
		"--server", "https://batch."+l.s.cfg.Domain+":"+strconv.Itoa(l.s.Endpoint.Port),
		"--connect", l.s.Endpoint.Address,
		"--credential-fd", "3", "--ca-fd", "4",
		"--root", root)
	sys := &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if l.s.cfg.UnsafeSharedHostNodes {
		args = append(args, "--unsafe-shared-host")
	} else {
		args = append(args, "--own-mount-namespace")
		sys.Cloneflags = syscall.CLONE_NEWNS
	}
	cmd := exec.Command(cmdline[0], args...)
	cmd.Env = agentEnv()
	cmd.Stdout, cmd.Stderr = nil, nil
	if l.s.cfg.NodeLog != nil {
		cmd.Stdout, cmd.Stderr = l.s.cfg.NodeLog, l.s.cfg.NodeLog
	}
	cmd.SysProcAttr = sys
	credR, credW, err := os.Pipe()
	if err != nil {
		return nil, nil, err
	}
	caR, caW, err := os.Pipe()
	if err != nil {
		credR.Close()
		credW.Close()
		return nil, nil, err
	}
	cmd.ExtraFiles = []*os.File{credR, caR}
	err = cmd.Start()
	credR.Close()
	caR.Close()
	if err != nil {
		credW.Close()
		caW.Close()
		return nil, nil, fmt.Errorf("start node agent: %w", err)
	}
	// Both fit in a pipe's buffer: the writes do not wait for the agent.
	_, _ = credW.Write([]byte(credential))
	credW.Close()
	_, _ = caW.Write(ca)
	caW.Close()
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		// The node is gone: so are its files.
		_ = os.RemoveAll(root)
		_ = os.RemoveAll(root + ".certs")
		close(exited)
	}()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-exited:
			case <-time.After(3 * time.Second):
				_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			}
		})
	}
	return stop, exited, nil
}

// agentEnv is a local agent's environment: the server's, less anything of
// Custody's own (a root key given as CUSTODY_ROOT_KEY stays with the server).
func agentEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "CUSTODY_") && !strings.HasPrefix(kv, "CUSTODY_TEST_") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// fencedTasks fences every task write of the scheduler and the node channel
// with this replica's lease epoch (sqlstore.Fence), on PostgreSQL: a former
// active that a new one replaced writes no task state, not even a write it
// had under way when it was cut off. Every method is spelt out (no
// embedding), so a write added to compute.Tasks cannot bypass the fence
// unnoticed: it does not compile until it is listed here.
type fencedTasks struct {
	tasks compute.Tasks
	s     *Server
}

var _ compute.Tasks = fencedTasks{}

func (f fencedTasks) Runnable(ctx context.Context, account, poolID string, limit int) ([]compute.RunnableTask, error) {
	return f.tasks.Runnable(ctx, account, poolID, limit)
}

func (f fencedTasks) JobPreparation(ctx context.Context, account, jobID string) (compute.JobTaskRun, bool, error) {
	return f.tasks.JobPreparation(ctx, account, jobID)
}

func (f fencedTasks) StartTask(ctx context.Context, account, jobID, taskID, nodeID string, at time.Time) (compute.TaskRun, bool, error) {
	return f.tasks.StartTask(f.s.fenced(ctx), account, jobID, taskID, nodeID, at)
}

func (f fencedTasks) StartTasks(ctx context.Context, account string, starts []compute.TaskStart, at time.Time) ([]compute.StartedTask, error) {
	return f.tasks.StartTasks(f.s.fenced(ctx), account, starts, at)
}

func (f fencedTasks) Started(ctx context.Context, account, jobID, taskID, nodeID string, at time.Time) (bool, error) {
	return f.tasks.Started(f.s.fenced(ctx), account, jobID, taskID, nodeID, at)
}

func (f fencedTasks) FinishTask(ctx context.Context, account, jobID, taskID string, res compute.RunResult) error {
	return f.tasks.FinishTask(f.s.fenced(ctx), account, jobID, taskID, res)
}

func (f fencedTasks) FinishTasks(ctx context.Context, account string, ends []compute.TaskEnd) error {
	return f.tasks.FinishTasks(f.s.fenced(ctx), account, ends)
}

// fenced returns ctx with this replica's write fence (ctx itself on
// SQLite, whose server is the only one).
func (s *Server) fenced(ctx context.Context) context.Context {
	if s.lease == nil {
		return ctx
	}
	return sqlstore.WithFence(ctx, s.lease.fence())
}

// accountDataDeleters deletes an account's data in every service.
type accountDataDeleters []batch.DataDeleter

func (d accountDataDeleters) DeleteAccountData(ctx context.Context, account string) error {
	for _, x := range d {
		if err := x.DeleteAccountData(ctx, account); err != nil {
			return err
		}
	}
	return nil
}

// openCompute builds the compute service (pools, nodes, scheduling) on top
// of the batch data plane.
func (s *Server) openCompute(data *batch.DataService) {
	tasks := &compute.BatchTasks{Keys: s.Batch, Data: data, Store: data.Store}
	s.tasks = fencedTasks{tasks, s}
	cfg := compute.Config{JobReleased: data.FinishTermination,
		Store: &sqlstore.ComputePoolStore{DB: s.DB}, Nodes: &sqlstore.ComputeNodeStore{DB: s.DB}, Keys: s.Batch, Tasks: s.tasks, Certificates: tasks,
		Identities: identityAdapter{s.Identity}, Logger: s.log, Poll: s.cfg.NodePoll, TaskDiskLimit: s.cfg.TaskDiskLimit,
		Tokens: func(ctx context.Context, principalID, resource string) (string, time.Time, error) {
			tok, err := s.Identity.ManagedIdentityToken(ctx, principalID, resource)
			if err != nil {
				return "", time.Time{}, err
			}
			return tok.Raw, tok.ExpiresAt, nil
		},
	}
	cfg.Recover = func(ctx context.Context, hold func(nodeID string) bool) []compute.HeldTask {
		as, err := s.Batch.Accounts.ListAccounts(ctx, "", "")
		if err != nil {
			s.log.Warn("compute: list accounts to requeue running tasks", "err", err)
			return nil
		}
		var held []compute.HeldTask
		ctx = s.fenced(ctx)
		for _, a := range as {
			h, err := tasks.RequeueRunning(ctx, a.Name, hold)
			held = append(held, h...)
			if err != nil {
				s.log.Warn("compute: requeue running tasks", "account", a.Name, "err", err)
			}
		}
		return held
	}
	if s.lease != nil {
		cfg.Fence = s.fence
	}
	if !s.cfg.DisableLocalNodes {
		cfg.Launcher = localLauncher{s}
	}
	s.Compute = compute.New(cfg)
	data.OnStop = func(account, jobID, taskID string) { s.Compute.KillTask(account, jobID, taskID) }
	data.OnAdd = func(string, string) { s.Compute.Kick() }
	data.OnJobEnd = s.Compute.JobEnded
	data.ReleasePending = s.Compute.ReleasePending
	s.Batch.KeyObservers = append(s.Batch.KeyObservers, s.Compute.OnKeyState)
	s.Batch.Data = accountDataDeleters{data, s.Compute}
	s.HTTP.RegisterCompute(s.Compute)
	// Auto pools: created and deleted with their job or job schedule.
	data.AutoPools, data.AutoPoolStore = s.HTTP.AutoPools(), &sqlstore.BatchAutoPoolStore{DB: s.DB}
}
