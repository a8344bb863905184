package compute

import (
	"context"
	"fmt"
	"strings"
	"time"

	"custody"
	"custody/node"
)

// The node channel: what agents call (see node/protocol.go).

func (s *Service) byCredential(cred string) (*liveNode, error) {
	if cred == "" {
		return nil, custody.Errorf(custody.KindUnauthenticated, "NodeCredentialRequired", "The request has no node credential; send 'Authorization: %s <credential>'.", node.CredentialScheme)
	}
	id := s.byCred[hashCredential(cred)]
	n := s.nodes[id]
	if n == nil {
		return nil, custody.Errorf(custody.KindUnauthenticated, "NodeCredentialInvalid", "The node credential is not valid: the node was removed from its pool or never existed.")
	}
	return n, nil
}

// mayServe refuses node traffic once this server may no longer act
// (Config.Fence: a replica that lost the cluster's active lease): the agent
// retries and reaches the new active replica.
func (s *Service) mayServe(ctx context.Context) error {
	if s.cfg.Fence == nil {
		return nil
	}
	if err := s.cfg.Fence(ctx); err != nil {
		return custody.Errorf(custody.KindUnavailable, "ServerNotActive", "This server no longer schedules tasks (it is not the cluster's active replica); retry, and the request reaches the one that is.")
	}
	return nil
}

// Join is an agent's first call.
func (s *Service) Join(ctx context.Context, cred string, req node.JoinRequest) (node.JoinResponse, error) {
	if err := s.mayServe(ctx); err != nil {
		return node.JoinResponse{}, err
	}
	s.recall(ctx, cred)
	s.mu.Lock()
	n, err := s.byCredential(cred)
	if err != nil {
		s.mu.Unlock()
		return node.JoinResponse{}, err
	}
	n.AgentVersion = req.AgentVersion
	n.queues = req.QueueRuns
	n.joined = true
	n.resumable = false
	n.reboot, n.drop, n.leave = false, false, false
	n.LastSync, n.LastBootTime = s.now(), s.now()
	// An agent joins only with no runs (it kills them all first), so what
	// the server still counts as running there is requeued now: runs of
	// an agent that joins again before it was declared lost, and tasks a
	// previous server process left running on it.
	stale, held := s.takeRuns(n), n.held
	n.held = nil
	n.runs = map[string]*run{}
	n.outbox, n.kill, n.StartTask = nil, nil, nil
	interrupted := n.resetJobs(false, s.now())
	account, poolID := n.Account, n.PoolID
	s.setState(n, NodeStarting)
	s.mu.Unlock()
	s.released(ctx, account, interrupted...)

	s.requeue(context.WithoutCancel(ctx), account, stale, n.ID)
	s.requeueHeld(context.WithoutCancel(ctx), held)

	s.prepareNode(ctx, account, poolID, n)
	s.mu.Lock()
	s.dispatchReleases(n) // release tasks of jobs that ended meanwhile
	s.mu.Unlock()
	s.mu.Lock()
	slots := n.slots
	s.mu.Unlock()
	s.Kick()
	return node.JoinResponse{NodeID: n.ID, PoolID: poolID, Account: account, PollSeconds: int(s.cfg.Poll / time.Second),
		LostAfterMillis: s.cfg.LostAfter.Milliseconds(), Limits: s.nodeLimits(n.VMSize), TaskSlots: slots}, nil
}

// resume takes a node this server loaded from the store back from its
// agent, which joined a former server (the replica that was active before,
// or this server before a restart) and holds req.Runs. The task runs the
// record has on the node (its held tasks) that the agent still holds, running
// or ended and not yet reported, are taken back as they are: they run on,
// and their reports count. Held tasks the agent does not hold never reached
// it, and are requeued, once; task runs the agent holds that the record does
// not have on the node are killed. A node that cannot resume (its pool
// cannot be read, its account's key is inaccessible, its start task is
// running) is left to join again: the agent is told to, and kills its runs.
func (s *Service) resume(ctx context.Context, n *liveNode, req node.SyncRequest) {
	p, err := s.Pool(ctx, n.Account, n.PoolID)
	s.mu.Lock()
	if n.joined || !n.resumable {
		s.mu.Unlock()
		return
	}
	n.resumable = false
	if err != nil || n.drop || s.locked[strings.ToLower(n.Account)] {
		s.mu.Unlock()
		return
	}
	for _, r := range req.Runs {
		if r.Kind != "task" && !r.Ended {
			s.mu.Unlock()
			return
		}
	}
	key := func(job, task string) string { return strings.ToLower(job) + "/" + strings.ToLower(task) }
	held := map[string]HeldTask{}
	for _, h := range n.held {
		held[key(h.JobID, h.TaskID)] = h
	}
	// One run per task is taken back, a running one rather than one that
	// ended (whose report then belongs to an earlier run).
	chosen := map[string]node.RunState{}
	for _, r := range req.Runs {
		k := key(r.JobID, r.TaskID)
		if _, ok := held[k]; !ok || r.Kind != "task" {
			continue
		}
		if c, ok := chosen[k]; !ok || (c.Ended && !r.Ended) {
			chosen[k] = r
		}
	}
	var kill []string
	for _, r := range req.Runs {
		if r.Kind == "task" && !r.Ended && chosen[key(r.JobID, r.TaskID)].RunID != r.RunID {
			kill = append(kill, r.RunID)
		}
	}
	for k, r := range chosen {
		h := held[k]
		delete(held, k)
		n.runs[r.RunID] = &run{id: r.RunID, kind: "task", jobID: h.JobID, taskID: h.TaskID, slots: max(h.RequiredSlots, 1),
			retries: h.RetryCount, maxRetr: h.MaxRetries}
		s.lastNode(n.Account, h.JobID, h.TaskID, n)
	}
	var requeue []HeldTask
	for _, h := range held {
		requeue = append(requeue, h)
	}
	n.held = nil
	n.joined = true
	n.reboot, n.leave = false, false
	n.kill, n.outbox, n.StartTask = kill, nil, nil
	n.slots, n.fill, n.configGen = p.TaskSlotsPerNode, p.NodeFillType, p.LastModified.UnixNano()
	n.LastSync = s.now()
	s.setState(n, NodeIdle)
	s.refreshState(n)
	account := n.Account
	s.mu.Unlock()
	s.requeueHeld(context.WithoutCancel(ctx), requeue)
	s.log.Info("compute: node resumed from its agent's runs", "account", account, "pool", n.PoolID, "node", n.ID,
		"runs", len(chosen), "requeued", len(requeue), "killed", len(kill))
	s.Kick()
}

// nodeLimits is the budget of a node of the given vmSize (see VMSize).
func (s *Service) nodeLimits(vmSize string) node.NodeLimits {
	size, ok := LookupVMSize(vmSize)
	if !ok {
		size = VMSize{CPUs: 1, MemoryMB: 2048, DiskGB: 10}
	}
	l := node.NodeLimits{CPUs: size.CPUs, MemoryBytes: int64(size.MemoryMB) << 20, Pids: int64(size.PidsPerCPU()) * int64(size.CPUs),
		DiskBytes: int64(size.DiskGB) << 30}
	if s.cfg.TaskDiskLimit > 0 && s.cfg.TaskDiskLimit < l.DiskBytes {
		l.DiskBytes = s.cfg.TaskDiskLimit
	}
	return l
}

// prepareNode queues the pool's start task on a node that (re)joined, or
// makes it idle.
func (s *Service) prepareNode(ctx context.Context, account, poolID string, n *liveNode) {
	p, err := s.Pool(ctx, account, poolID)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		if custody.ErrorCode(err) == "AccountKeyInaccessible" {
			s.locked[strings.ToLower(account)] = true
		}
		n.drop = true
		s.setState(n, NodeUnusable)
		return
	}
	n.slots, n.fill = p.TaskSlotsPerNode, p.NodeFillType
	n.configGen = p.LastModified.UnixNano()
	if st := p.Spec.StartTask; st != nil {
		n.seq++
		env := map[string]string{}
		for _, e := range st.EnvironmentSettings {
			env[e.Name] = e.Value
		}
		r := &node.Run{RunID: fmt.Sprintf("starttask/%d", n.seq), Kind: "starttask", CommandLine: st.CommandLine, Env: env, UserIdentity: st.User()}
		max := 0
		if st.MaxTaskRetryCount != nil {
			max = int(*st.MaxTaskRetryCount)
		}
		n.runs[r.RunID] = &run{id: r.RunID, kind: "starttask", spec: r, maxRetr: max}
		n.outbox = append(n.outbox, *r)
		n.StartTask = &StartTaskInfo{State: "running", StartTime: s.now()}
		if st.WaitsForSuccess() {
			s.setState(n, NodeWaitingForStartTask)
			return
		}
	}
	s.setState(n, NodeIdle)
}

// usable reports whether a node may take tasks. Caller holds s.mu.
func (n *liveNode) usable() bool {
	return n.joined && n.SchedulingEnabled && !n.drop && !n.dropPending && !n.leave && !n.reboot &&
		(n.State == NodeIdle || n.State == NodeRunning)
}

// resumeWait is how long the sync of an agent that may resume its node
// waits for Run to have loaded the record of the nodes and their tasks
// before it is told to retry.
const resumeWait = 5 * time.Second

// Sync is an agent's long poll and heartbeat.
func (s *Service) Sync(ctx context.Context, cred string, req node.SyncRequest) (node.SyncResponse, error) {
	if err := s.mayServe(ctx); err != nil {
		return node.SyncResponse{}, err
	}
	s.recall(ctx, cred)
	s.mu.Lock()
	n, err := s.byCredential(cred)
	if err != nil {
		s.mu.Unlock()
		return node.SyncResponse{}, err
	}
	if !n.joined && n.resumable && !n.Local && req.NodeID == n.ID {
		s.mu.Unlock()
		select {
		case <-s.recovered:
		case <-ctx.Done():
			return node.SyncResponse{}, ctx.Err()
		case <-time.After(resumeWait):
			return node.SyncResponse{}, custody.Errorf(custody.KindUnavailable, "ServerStarting", "The server is still loading the record of its nodes; retry.")
		}
		s.resume(ctx, n, req)
		s.mu.Lock()
	}
	if n.reboot {
		n.reboot = false
		n.LastSync = s.now()
		s.mu.Unlock()
		return node.SyncResponse{State: NodeRebooting, Reboot: true}, nil
	}
	if !n.joined {
		// The server restarted, or lost the node, since the agent joined:
		// whatever it runs was requeued, so it starts over and joins again.
		n.LastSync = s.now()
		state := n.State
		s.mu.Unlock()
		return node.SyncResponse{State: state, Rejoin: true}, nil
	}
	n.LastSync = s.now()
	s.mu.Unlock()

	timer := time.NewTimer(s.cfg.Poll)
	defer timer.Stop()
	waited := false
	for {
		resp, ready := s.syncAnswer(ctx, n, req)
		if len(resp.Runs) > 0 {
			// A server that froze while the poll was held may have been
			// replaced meanwhile: it hands out no run then.
			if err := s.mayServe(ctx); err != nil {
				return node.SyncResponse{}, err
			}
		}
		if ready || waited {
			s.mu.Lock()
			n.LastSync = s.now()
			s.mu.Unlock()
			return resp, nil
		}
		select {
		case <-ctx.Done():
			return node.SyncResponse{}, ctx.Err()
		case <-timer.C:
			waited = true
		case <-s.draining():
			// The server is shutting down: answer now with what there
			// is, so the shutdown does not wait for held polls.
			waited = true
		case <-n.wake:
		}
	}
}

// syncAnswer builds the answer to a sync; ready is false when there is
// nothing to say yet.
func (s *Service) syncAnswer(ctx context.Context, n *liveNode, req node.SyncRequest) (node.SyncResponse, bool) {
	s.mu.Lock()
	resp := node.SyncResponse{State: n.State, Drop: n.drop || n.dropPending, Leave: n.leave, Reboot: n.reboot}
	ready := n.leave || n.reboot || n.dropPending || len(n.kill) > 0 || len(n.outbox) > 0 || len(n.fileOut) > 0
	n.dropPending = false
	if n.drop && req.HaveConfig != 0 {
		ready = true
	}
	resp.Kill, n.kill = n.kill, nil
	resp.Runs, n.outbox = n.outbox, nil
	resp.Files, n.fileOut = n.fileOut, nil
	for _, r := range resp.Runs {
		if lr := n.runs[r.RunID]; lr != nil {
			lr.spec = nil // delivered: the server keeps no plaintext
		}
	}
	if n.reboot {
		n.reboot = false
	}
	needConfig := !n.drop && !n.leave && n.joined && req.HaveConfig != n.configGen
	account, poolID, gen := n.Account, n.PoolID, n.configGen
	s.mu.Unlock()
	if needConfig {
		if c, err := s.nodeConfig(ctx, account, poolID, gen); err == nil {
			resp.Config = c
			ready = true
		} else {
			s.log.Warn("compute: node configuration", "account", account, "pool", poolID, "err", err)
		}
	}
	return resp, ready
}

func (s *Service) nodeConfig(ctx context.Context, account, poolID string, gen int64) (*node.Config, error) {
	p, err := s.Pool(ctx, account, poolID)
	if err != nil {
		return nil, err
	}
	c := &node.Config{Generation: gen}
	for _, u := range p.Spec.UserAccounts {
		c.UserAccounts = append(c.UserAccounts, node.UserAccount{Name: u.Name, ElevationLevel: u.ElevationLevel})
	}
	for _, id := range p.Identities {
		c.Identities = append(c.Identities, id.ClientID)
	}
	if s.cfg.Certificates != nil {
		for _, ref := range p.Certificates {
			cert, err := s.cfg.Certificates.NodeCertificate(ctx, account, ref.ThumbprintAlgorithm, ref.Thumbprint)
			if err != nil {
				return nil, err
			}
			c.Certificates = append(c.Certificates, cert)
		}
	}
	return c, nil
}

// Report records runs that ended on a node.
func (s *Service) Report(ctx context.Context, cred string, req node.ReportRequest) error {
	type done struct {
		r   *run
		rep node.RunReport
	}
	var tasks []done
	var follow []jobTaskFollowUp
	var unavailable error
	if err := s.mayServe(ctx); err != nil {
		return err
	}
	s.recall(ctx, cred)
	s.mu.Lock()
	n, err := s.byCredential(cred)
	if err != nil {
		s.mu.Unlock()
		return err
	}
	if !n.joined && n.resumable && !n.Local {
		// The agent may resume the node with these runs at its next sync:
		// their reports count from then on.
		s.mu.Unlock()
		return custody.Errorf(custody.KindUnavailable, "NodeNotResumed", "The node has not synced with this server since it took over; its reports are taken once it has. Retry.")
	}
	n.LastSync = s.now()
	for _, rep := range req.Finished {
		r := n.runs[rep.RunID]
		if r == nil {
			continue // killed and already requeued, or unknown
		}
		delete(n.runs, rep.RunID)
		failed := rep.Failed()
		if r.kind == "starttask" {
			s.startTaskDone(n, r, rep, failed)
			continue
		}
		if r.kind == kindJobPrep || r.kind == kindJobRelease {
			follow = append(follow, s.jobTaskDone(n, r, rep))
			continue
		}
		if d := rep.EndTime.Sub(rep.StartTime); d >= 0 && d < DispatchAheadWindow {
			n.shortEnd = s.now()
		}
		n.TotalTasksRun++
		if !failed {
			n.TotalTasksSucceeded++
		}
		n.RecentTasks = append(n.RecentTasks, RecentTask{JobID: r.jobID, TaskID: r.taskID, State: "completed", StartTime: rep.StartTime})
		if len(n.RecentTasks) > 10 {
			n.RecentTasks = n.RecentTasks[len(n.RecentTasks)-10:]
		}
		tasks = append(tasks, done{r, rep})
	}
	s.refreshState(n)
	s.dispatchReleases(n)
	account, nodeID := n.Account, n.ID
	s.mu.Unlock()
	// The node may take more work at once: the next pass fills the slots
	// (and the node's queue) while these runs' ends are written.
	s.Kick()
	for _, f := range follow {
		s.followUp(context.WithoutCancel(ctx), account, f)
	}

	ends := make([]TaskEnd, 0, len(tasks))
	for _, d := range tasks {
		failed := d.rep.Failed()
		res := RunResult{NodeID: nodeID, ExitCode: d.rep.ExitCode, StartTime: d.rep.StartTime, EndTime: d.rep.EndTime,
			Outcome: Decide(failed, d.r.killed, false, d.r.retries, d.r.maxRetr)}
		switch {
		case d.r.killed:
			res.FailureCode, res.FailureMessage = "TaskEnded", "The task was terminated."
		case d.rep.TimedOut:
			res.FailureCode, res.FailureMessage = "MaxWallClockTimeExceeded", "The task ran longer than its maxWallClockTime and was killed."
		case d.rep.DiskExceeded:
			res.FailureCode, res.FailureMessage = "DiskFull", "The task's files (working directory, stdout.txt and stderr.txt) outgrew the disk budget of the pool's vmSize and the task was killed."
		case d.rep.OOMKilled:
			res.FailureCode, res.FailureMessage = "TaskOutOfMemory", fmt.Sprintf("A process of the task was killed for exceeding the memory of the pool's vmSize (exit code %d).", d.rep.ExitCode)
		case d.rep.StartError != "":
			res.FailureCode, res.FailureMessage = "CommandProgramNotFound", "The task could not be started: "+d.rep.StartError
		case failed:
			res.FailureCode, res.FailureMessage = "FailureExitCode", fmt.Sprintf("The task exited with exit code %d.", d.rep.ExitCode)
		}
		ends = append(ends, TaskEnd{JobID: d.r.jobID, TaskID: d.r.taskID, Result: res})
	}
	if len(ends) > 0 {
		if err := s.cfg.Tasks.FinishTasks(context.WithoutCancel(ctx), account, ends); err != nil {
			s.log.Warn("compute: finish tasks", "account", account, "tasks", len(ends), "err", err)
			if custody.ErrorKind(err) == custody.KindUnavailable {
				// Fenced: another replica is active now; the agent sends
				// the report again and it reaches that one.
				unavailable = err
			}
		}
	}
	s.Kick()
	return unavailable
}

// startTaskDone records the start task's end. Caller holds s.mu.
func (s *Service) startTaskDone(n *liveNode, r *run, rep node.RunReport, failed bool) {
	now := s.now()
	st := n.StartTask
	if st == nil {
		st = &StartTaskInfo{StartTime: rep.StartTime}
		n.StartTask = st
	}
	code := rep.ExitCode
	st.EndTime, st.ExitCode = &now, &code
	if failed && (r.maxRetr < 0 || st.RetryCount < r.maxRetr) {
		st.RetryCount++
		st.LastRetryTime = &now
		s.mu.Unlock()
		p, err := s.Pool(context.Background(), n.Account, n.PoolID)
		s.mu.Lock()
		if err == nil && p.Spec.StartTask != nil {
			n.seq++
			env := map[string]string{}
			for _, e := range p.Spec.StartTask.EnvironmentSettings {
				env[e.Name] = e.Value
			}
			nr := node.Run{RunID: fmt.Sprintf("starttask/%d", n.seq), Kind: "starttask", CommandLine: p.Spec.StartTask.CommandLine, Env: env, UserIdentity: p.Spec.StartTask.User()}
			n.runs[nr.RunID] = &run{id: nr.RunID, kind: "starttask", maxRetr: r.maxRetr}
			n.outbox = append(n.outbox, nr)
			st.State, st.EndTime, st.ExitCode = "running", nil, nil
			s.wakeNode(n)
			return
		}
	}
	st.State = "completed"
	if failed {
		st.Result = "failure"
		if n.State == NodeWaitingForStartTask {
			s.setState(n, NodeStartTaskFailed)
			n.Errors = append(n.Errors, NodeError{Code: "StartTaskFailed", Message: fmt.Sprintf("The start task failed with exit code %d.", code)})
		}
		return
	}
	st.Result = "success"
	if n.State == NodeWaitingForStartTask {
		s.setState(n, NodeIdle)
	}
}

// refreshState sets idle or running from the node's runs. Caller holds s.mu.
func (s *Service) refreshState(n *liveNode) {
	if n.State != NodeIdle && n.State != NodeRunning {
		return
	}
	busy := false
	for _, r := range n.runs {
		if r.kind == "task" {
			busy = true
			break
		}
	}
	if busy {
		s.setState(n, NodeRunning)
	} else {
		s.setState(n, NodeIdle)
	}
}

// Token issues a managed identity token for a task on a node of a pool with
// that identity. The account's own identity is never available on nodes.
func (s *Service) Token(ctx context.Context, cred string, req node.TokenRequest) (node.TokenResponse, error) {
	s.recall(ctx, cred)
	s.mu.Lock()
	n, err := s.byCredential(cred)
	if err != nil {
		s.mu.Unlock()
		return node.TokenResponse{}, err
	}
	account, poolID, drop, joined := n.Account, n.PoolID, n.drop, n.joined
	s.mu.Unlock()
	if !joined {
		return node.TokenResponse{}, custody.Errorf(custody.KindConflict, "NodeNotJoined", "The node has not joined its pool; no tokens are issued on it.")
	}
	if drop {
		return node.TokenResponse{}, custody.Errorf(custody.KindConflict, "NodeUnusable", "The node is unusable; no tokens are issued on it.")
	}
	if req.Resource == "" {
		return node.TokenResponse{}, custody.Errorf(custody.KindInvalid, "ResourceRequired", "The resource parameter is required.")
	}
	p, err := s.Pool(ctx, account, poolID)
	if err != nil {
		return node.TokenResponse{}, err
	}
	var match []PoolIdentity
	for _, id := range p.Identities {
		switch {
		case req.ClientID != "":
			if strings.EqualFold(id.ClientID, req.ClientID) {
				match = append(match, id)
			}
		case req.ResourceID != "":
			if strings.EqualFold(id.ResourceID, req.ResourceID) {
				match = append(match, id)
			}
		case req.PrincipalID != "":
			if strings.EqualFold(id.PrincipalID, req.PrincipalID) {
				match = append(match, id)
			}
		default:
			match = append(match, id)
		}
	}
	if len(match) == 0 {
		return node.TokenResponse{}, custody.Errorf(custody.KindInvalid, "IdentityNotFound", "No user-assigned identity of pool %q matches the request. Attach the identity to the pool; the account's own identity is not available on nodes.", poolID)
	}
	if len(match) > 1 {
		return node.TokenResponse{}, custody.Errorf(custody.KindInvalid, "IdentityAmbiguous", "Pool %q has several user-assigned identities; name one with client_id, mi_res_id or object_id.", poolID)
	}
	if s.cfg.Tokens == nil {
		return node.TokenResponse{}, custody.Errorf(custody.KindUnavailable, "TokenServiceUnavailable", "No token service is configured.")
	}
	tok, exp, err := s.cfg.Tokens(ctx, match[0].PrincipalID, req.Resource)
	if err != nil {
		return node.TokenResponse{}, err
	}
	return node.TokenResponse{AccessToken: tok, ExpiresOn: exp.Unix(), Resource: req.Resource, ClientID: match[0].ClientID}, nil
}

// Drain ends every held node sync at once with what there is to say, and
// makes later syncs answer without waiting. The server calls it when it
// starts to shut down, so that long-polls do not hold the shutdown.
func (s *Service) Drain() {
	s.drainOnce.Do(func() { close(s.draining()) })
}

func (s *Service) draining() chan struct{} {
	s.drainInit.Do(func() { s.drain = make(chan struct{}) })
	return s.drain
}
