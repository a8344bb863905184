package server

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"custody/batch"
	"custody/compute"
	"custody/sqlstore"
	"custody/tlsca"
)

// NodeCredentialEnv is the environment variable a local node agent reads
// its credential from (never a command-line argument, which others can see).
const NodeCredentialEnv = "CUSTODY_NODE_CREDENTIAL"

// localLauncher starts nodes as `custody node` child processes.
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
	root := filepath.Join(l.s.cfg.DataDir, "nodes", account, poolID, nodeID)
	args := append(cmdline[1:len(cmdline):len(cmdline)],
		"--server", "https://batch."+l.s.cfg.Domain+":"+strconv.Itoa(l.s.Endpoint.Port),
		"--connect", l.s.Endpoint.Address,
		"--ca-file", filepath.Join(l.s.cfg.DataDir, tlsca.CAFile),
		"--root", root)
	cmd := exec.Command(cmdline[0], args...)
	cmd.Env = append(os.Environ(), NodeCredentialEnv+"="+credential)
	cmd.Stdout, cmd.Stderr = nil, nil
	if l.s.cfg.NodeLog != nil {
		cmd.Stdout, cmd.Stderr = l.s.cfg.NodeLog, l.s.cfg.NodeLog
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, nil, fmt.Errorf("start node agent: %w", err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
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
	cfg := compute.Config{
		Store: &sqlstore.ComputePoolStore{DB: s.DB}, Nodes: &sqlstore.ComputeNodeStore{DB: s.DB}, Keys: s.Batch, Tasks: tasks, Certificates: tasks,
		Identities: identityAdapter{s.Identity}, Logger: s.log, Poll: s.cfg.NodePoll,
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
		for _, a := range as {
			h, err := tasks.RequeueRunning(ctx, a.Name, hold)
			held = append(held, h...)
			if err != nil {
				s.log.Warn("compute: requeue running tasks", "account", a.Name, "err", err)
			}
		}
		return held
	}
	if !s.cfg.DisableLocalNodes {
		cfg.Launcher = localLauncher{s}
	}
	s.Compute = compute.New(cfg)
	data.OnStop = func(account, jobID, taskID string) { s.Compute.KillTask(account, jobID, taskID) }
	data.OnAdd = func(string, string) { s.Compute.Kick() }
	s.Batch.KeyObservers = append(s.Batch.KeyObservers, s.Compute.OnKeyState)
	s.Batch.Data = accountDataDeleters{data, s.Compute}
	s.HTTP.RegisterCompute(s.Compute)
}
