package compute

import (
	"context"
	"strings"
	"sync"
	"time"

	"custody"
	"custody/node"
)

// Run keeps pools at their targets, detects lost nodes and places tasks
// until ctx is done. Work is triggered by Kick and by a short ticker.
func (s *Service) Run(ctx context.Context) {
	if !s.fenced(ctx) {
		return
	}
	s.startUp(ctx)
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	slow := time.Now()
	for {
		select {
		case <-ctx.Done():
			s.stopAll()
			return
		case <-t.C:
		case <-s.kick:
		}
		if !s.fenced(ctx) {
			s.stopAll()
			return
		}
		if time.Since(slow) > 250*time.Millisecond {
			s.reconcile(ctx)
			s.detectLost(ctx)
			slow = time.Now()
		}
		s.schedule(ctx)
	}
}

// startUp loads the stored remote nodes and deals with the tasks a former
// server left running; then nodes may resume.
func (s *Service) startUp(ctx context.Context) {
	s.loadRemoteNodes(ctx)
	s.recover(ctx)
	s.recoveredOnce.Do(func() { close(s.recovered) })
}

// fenced reports whether Run may make another pass (Config.Fence).
func (s *Service) fenced(ctx context.Context) bool {
	if s.cfg.Fence == nil {
		return true
	}
	if err := s.cfg.Fence(ctx); err != nil {
		if ctx.Err() == nil {
			s.log.Error("compute: stopped scheduling and local nodes", "err", err)
		}
		return false
	}
	return true
}

// recover deals with the tasks a previous server process left running,
// before anything is scheduled. Those on local nodes (or nodes no longer
// known) are requeued at once: local agents died with that process
// (Pdeathsig) and their runs with them. Those on a stored remote node may
// still be running there, so they stay running, and are not scheduled, until
// the node's agent joins again (an agent kills all its runs before it joins)
// or the node is lost (an agent kills its runs once it has failed to reach
// the server for most of the lost timeout); then they are requeued. Either
// way a task never runs twice at once, and is requeued once.
func (s *Service) recover(ctx context.Context) {
	if s.cfg.Recover == nil {
		return
	}
	held := s.cfg.Recover(ctx, s.remoteNode)
	var now []HeldTask
	s.mu.Lock()
	for _, h := range held {
		n := s.nodes[h.NodeID]
		if n == nil || n.Local || n.joined {
			// A node that joined already (its agent synced before this
			// ran) killed its runs before it joined.
			now = append(now, h)
			continue
		}
		n.held = append(n.held, h)
	}
	s.mu.Unlock()
	if len(held) > 0 {
		s.log.Info("compute: tasks left running on remote nodes wait for their agents to join again", "tasks", len(held)-len(now))
	}
	s.requeueHeld(context.WithoutCancel(ctx), now)
}

// remoteNode reports whether a node is a stored remote node in memory.
func (s *Service) remoteNode(nodeID string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.nodes[nodeID]
	return n != nil && !n.Local
}

// requeueHeld requeues held tasks (each only if it still runs on its node).
func (s *Service) requeueHeld(ctx context.Context, held []HeldTask) {
	for _, h := range held {
		s.requeue(ctx, h.Account, []*run{{kind: "task", jobID: h.JobID, taskID: h.TaskID}}, h.NodeID)
	}
}

// stopAll stops every local node (the server is shutting down).
func (s *Service) stopAll() {
	s.mu.Lock()
	var stops []func()
	for _, n := range s.nodes {
		if n.stop != nil {
			stops = append(stops, n.stop)
		}
	}
	s.mu.Unlock()
	// All at once: a replica that lost its lease must be done before
	// another takes over.
	var wg sync.WaitGroup
	for _, stop := range stops {
		wg.Add(1)
		go func() { defer wg.Done(); stop() }()
	}
	wg.Wait()
}

// OnKeyState is told when an account's key becomes inaccessible (locked) or
// accessible again. Locking makes every node of the account unusable: runs
// are killed and requeued, agents drop the pool's customer data, and no
// work starts. Unlocking makes the nodes idle again.
func (s *Service) OnKeyState(account string, locked bool) {
	key := strings.ToLower(account)
	s.mu.Lock()
	if s.locked[key] == locked {
		s.mu.Unlock()
		return
	}
	s.locked[key] = locked
	type lost struct {
		runs []*run
		node string
	}
	var requeue []lost
	var interrupted []string
	for _, n := range s.nodes {
		if strings.ToLower(n.Account) != key {
			continue
		}
		if locked {
			requeue = append(requeue, lost{s.takeRuns(n), n.ID})
			n.outbox = nil
			// The agent deletes the tasks' files.
			interrupted = append(interrupted, n.resetJobs(true, s.now())...)
			n.drop, n.dropPending = true, true
			s.setState(n, NodeUnusable)
			n.Errors = append(n.Errors[:0:0], NodeError{Code: "AccountKeyInaccessible", Message: "The account's customer-managed key is inaccessible; the node cannot run tasks until access is restored."})
		} else {
			n.drop = false
			n.Errors = nil
			if n.joined {
				s.setState(n, NodeIdle)
			}
			s.dispatchReleases(n)
		}
		s.wakeNode(n)
	}
	s.mu.Unlock()
	for _, l := range requeue {
		s.requeue(context.Background(), account, l.runs, l.node)
	}
	s.released(context.Background(), account, interrupted...)
	s.log.Info("compute: account key state changed", "account", account, "locked", locked)
	s.Kick()
}

func (s *Service) isLocked(account string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.locked[strings.ToLower(account)]
}

// bumpConfig wakes a pool's nodes so they fetch its changed configuration.
func (s *Service) bumpConfig(account, poolID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range s.poolNodes(account, poolID) {
		n.configGen = s.now().UnixNano()
		s.wakeNode(n)
	}
}

// reconcile brings each pool's node count to its target and finishes
// deletions.
func (s *Service) reconcile(ctx context.Context) {
	pools, err := s.cfg.Store.AllPools(ctx)
	if err != nil {
		s.log.Warn("compute: list pools", "err", err)
		return
	}
	for _, p := range pools {
		// The key state decides whether the pool's nodes are usable.
		_, _, kerr := s.cfg.Keys.DEK(ctx, p.Account)
		if custody.ErrorCode(kerr) == "AccountKeyInaccessible" {
			s.OnKeyState(p.Account, true)
		} else if kerr == nil && s.isLocked(p.Account) {
			s.OnKeyState(p.Account, false)
		}
		s.mu.Lock()
		ns := s.poolNodes(p.Account, p.ID)
		s.mu.Unlock()
		if p.State == PoolDeleting {
			for _, n := range ns {
				s.removeNode(n, false)
			}
			if err := s.forgetPoolNodes(ctx, p.Account, p.ID); err != nil {
				s.log.Warn("compute: delete node credentials", "pool", p.ID, "err", err)
				continue
			}
			if err := s.cfg.Store.DeletePool(ctx, p.Account, p.ID); err != nil && !custody.IsNotFound(err) {
				s.log.Warn("compute: delete pool", "pool", p.ID, "err", err)
			}
			continue
		}
		target := p.Target()
		switch {
		case len(ns) < target && s.cfg.Launcher != nil && p.AllocationState != AllocStopping:
			for i := len(ns); i < target; i++ {
				s.launch(p, i < p.TargetDedicated)
			}
		case len(ns) > target:
			// Shrink: idle nodes go first, then the newest.
			extra := len(ns) - target
			for _, pass := range []bool{true, false} {
				for i := len(ns) - 1; i >= 0 && extra > 0; i-- {
					s.mu.Lock()
					idle := ns[i].State != NodeRunning
					gone := ns[i].leave
					s.mu.Unlock()
					if gone || (pass && !idle) {
						continue
					}
					s.removeNode(ns[i], true)
					ns[i].leave = true
					extra--
				}
			}
		}
		s.mu.Lock()
		count := len(s.poolNodes(p.Account, p.ID))
		s.mu.Unlock()
		steady := count == target || (s.cfg.Launcher == nil && count <= target)
		if steady && p.AllocationState != AllocSteady {
			prev := p.ETag
			p.AllocationState, p.AllocationTime = AllocSteady, s.now()
			_ = s.cfg.Store.UpdatePool(ctx, p, prev)
		}
	}
}

// launch starts a local node for a pool.
func (s *Service) launch(p *Pool, dedicated bool) {
	cred := NewCredential()
	now := s.now()
	n := &liveNode{Node: Node{Account: p.Account, PoolID: p.ID, ID: newNodeID(), State: NodeCreating, SchedulingEnabled: true,
		StateTransitionTime: now, AllocationTime: now, VMSize: p.VMSize, IsDedicated: dedicated, Local: true, IPAddress: "127.0.0.1", LastSync: now},
		credHash: hashCredential(cred), slots: p.TaskSlotsPerNode, runs: map[string]*run{}, wake: make(chan struct{}, 1)}
	s.mu.Lock()
	s.nodes[n.ID] = n
	s.byCred[n.credHash] = n.ID
	s.mu.Unlock()
	stop, exited, err := s.cfg.Launcher.Launch(p.Account, p.ID, n.ID, cred)
	if err != nil {
		s.log.Warn("compute: start local node", "pool", p.ID, "err", err)
		s.mu.Lock()
		delete(s.nodes, n.ID)
		delete(s.byCred, n.credHash)
		s.mu.Unlock()
		return
	}
	s.mu.Lock()
	n.stop = stop
	s.mu.Unlock()
	go func() {
		<-exited
		s.mu.Lock()
		_, still := s.nodes[n.ID]
		s.mu.Unlock()
		if still {
			s.log.Warn("compute: local node agent exited; its tasks are requeued", "pool", p.ID, "node", n.ID)
			s.removeNode(n, true)
			s.Kick()
		}
	}()
}

// AddRemoteNode registers a node that an agent on another machine will
// join with the returned credential. The node and the credential's hash
// are stored, so the agent can join again after the server restarts.
func (s *Service) AddRemoteNode(ctx context.Context, account, poolID string) (nodeID, credential string, err error) {
	p, err := s.Pool(ctx, account, poolID)
	if err != nil {
		return "", "", err
	}
	if p.State == PoolDeleting {
		return "", "", custody.Errorf(custody.KindConflict, "PoolBeingDeleted", "The pool %q is being deleted.", poolID)
	}
	cred := NewCredential()
	now := s.now()
	n := &liveNode{Node: Node{Account: p.Account, PoolID: p.ID, ID: newNodeID(), State: NodeCreating, SchedulingEnabled: true,
		StateTransitionTime: now, AllocationTime: now, VMSize: p.VMSize, IsDedicated: true, LastSync: now},
		credHash: hashCredential(cred), slots: p.TaskSlotsPerNode, runs: map[string]*run{}, wake: make(chan struct{}, 1)}
	if s.cfg.Nodes != nil {
		if err := s.cfg.Nodes.PutNode(ctx, &RemoteNode{Account: p.Account, PoolID: p.ID, NodeID: n.ID, CredentialHash: n.credHash, CreatedAt: now}); err != nil {
			return "", "", err
		}
	}
	s.mu.Lock()
	s.nodes[n.ID] = n
	s.byCred[n.credHash] = n.ID
	s.mu.Unlock()
	return n.ID, cred, nil
}

// detectLost requeues the runs of nodes that stopped syncing.
func (s *Service) detectLost(ctx context.Context) {
	now := s.now()
	var lost, offline []*liveNode
	var released []HeldTask
	s.mu.Lock()
	for _, n := range s.nodes {
		limit := s.cfg.LostAfter
		if !n.joined {
			if !n.Local {
				// A remote agent may join whenever it is started; tasks
				// left running on it by a previous server process are
				// requeued once it has not synced for the lost timeout
				// (its agent has killed them by then).
				if len(n.held) > 0 && now.Sub(n.LastSync) > limit {
					released = append(released, n.held...)
					n.held = nil
					// Its agent has killed those runs by now: it joins
					// again rather than resumes.
					n.resumable = false
				}
				continue
			}
			limit = max(limit, time.Minute) // agents take a moment to start
		}
		if now.Sub(n.LastSync) > limit && !n.leave {
			if n.Local {
				lost = append(lost, n)
			} else {
				offline = append(offline, n)
			}
		}
	}
	s.mu.Unlock()
	if len(released) > 0 {
		s.log.Warn("compute: remote nodes did not join again in time; the tasks they ran before the restart are requeued", "tasks", len(released))
		s.requeueHeld(ctx, released)
	}
	for _, n := range offline {
		s.log.Warn("compute: remote node lost (no heartbeat); its tasks are requeued and it is offline until its agent joins again", "pool", n.PoolID, "node", n.ID)
		s.nodeOffline(n)
	}
	for _, n := range lost {
		s.log.Warn("compute: node lost (no heartbeat); its tasks are requeued", "pool", n.PoolID, "node", n.ID)
		s.removeNode(n, true)
	}
}

// schedule places runnable tasks on free slots of every pool with usable
// nodes.
func (s *Service) schedule(ctx context.Context) {
	type poolKey struct{ account, pool string }
	free := map[poolKey][]SlotNode{}
	fill := map[poolKey]string{}
	now := s.now()
	s.mu.Lock()
	for _, n := range s.nodes {
		if !n.usable() || s.locked[strings.ToLower(n.Account)] {
			continue
		}
		used := 0
		for _, r := range n.runs {
			used += r.slots
		}
		capacity := n.slots
		if n.queues && !n.shortEnd.IsZero() && now.Sub(n.shortEnd) < DispatchAheadWindow {
			// Dispatch ahead: the agent starts a queued run the moment a
			// slot frees, without waiting for this pass.
			capacity = DispatchAhead * n.slots
		}
		if used >= capacity {
			continue
		}
		k := poolKey{strings.ToLower(n.Account), strings.ToLower(n.PoolID)}
		free[k] = append(free[k], SlotNode{ID: n.ID, Free: capacity - used, Running: used, LowPriority: !n.IsDedicated})
		fill[k] = n.fill
	}
	s.mu.Unlock()
	for k, ns := range free {
		sortNodes(ns)
		total := 0
		for _, n := range ns {
			total += n.Free
		}
		cands, err := s.cfg.Tasks.Runnable(ctx, k.account, k.pool, total)
		if err != nil {
			s.log.Warn("compute: runnable tasks", "pool", k.pool, "err", err)
			continue
		}
		if len(cands) == 0 {
			continue
		}
		s.mu.Lock()
		excluded := s.excludedNodes(k.account, k.pool)
		s.mu.Unlock()
		cs := make([]Candidate, len(cands))
		for i, c := range cands {
			cs[i] = Candidate{JobID: c.JobID, TaskID: c.TaskID, RequiredSlots: c.RequiredSlots, Exclusive: c.Exclusive,
				DedicatedOnly: c.DedicatedOnly, Exclude: excluded[strings.ToLower(c.JobID)]}
		}
		if fill[k] == "" {
			fill[k] = "spread"
		}
		s.start(ctx, k.account, Place(ns, cs, fill[k]))
	}
}

// DispatchAhead is how many runs per slot the scheduler keeps on a node
// whose agent queues runs, while its runs are short: one running and one
// waiting to start the moment the first ends, so a slot does not sit idle
// for a report, a scheduling pass and a sync between two short tasks. A
// node dispatches ahead only while a run that lasted less than
// DispatchAheadWindow ended on it within the last DispatchAheadWindow: a
// run queued there waits about one short task, and a task of a job with a
// higher priority that arrives meanwhile is delayed by no more; behind long
// tasks nothing is queued, so priorities decide at the moment a slot frees.
const (
	DispatchAhead       = 2
	DispatchAheadWindow = 100 * time.Millisecond
)

// start moves placed tasks to running (one transaction) and queues them for
// their nodes.
func (s *Service) start(ctx context.Context, account string, pls []Placement) {
	starts := make([]TaskStart, 0, len(pls))
	placed := make([]Placement, 0, len(pls))
	for _, pl := range pls {
		s.mu.Lock()
		n := s.nodes[pl.NodeID]
		ok := n != nil && n.usable()
		s.mu.Unlock()
		if !ok {
			continue
		}
		// The job's preparation task, the first time the node gets one of
		// its tasks (jobtasks.go).
		nj := s.prepareJob(ctx, account, n, pl.JobID)
		if nj == nil {
			continue
		}
		s.mu.Lock()
		preparing, failed := nj.prepPending(), nj.prepFailed()
		s.mu.Unlock()
		if failed {
			continue
		}
		starts = append(starts, TaskStart{JobID: pl.JobID, TaskID: pl.TaskID, NodeID: pl.NodeID, Preparing: preparing})
		placed = append(placed, pl)
	}
	if len(starts) == 0 {
		return
	}
	// A task or job stopped while its start is written is killed once its
	// run exists (KillTask found nothing to kill yet); one stopped before
	// is not started (StartTasks reads the task's and the job's state
	// after this).
	s.mu.Lock()
	gen := s.killGen
	s.mu.Unlock()
	started, err := s.cfg.Tasks.StartTasks(ctx, account, starts, s.now())
	if err != nil {
		s.log.Warn("compute: start tasks", "account", account, "tasks", len(starts), "err", err)
		return
	}
	gone := map[string][]*run{}
	var settle [][2]string
	var ended []endedRun
	s.mu.Lock()
	for i, st := range started {
		if !st.OK {
			continue
		}
		pl, tr := placed[i], st.Run
		n := s.nodes[pl.NodeID]
		if n == nil || !n.usable() {
			// The node went away between placement and start: requeue.
			gone[pl.NodeID] = append(gone[pl.NodeID], &run{kind: "task", jobID: pl.JobID, taskID: pl.TaskID})
			continue
		}
		n.seq++
		slots := max(pl.RequiredSlots, 1)
		r := &node.Run{RunID: pl.JobID + "/" + pl.TaskID + "/" + itoa(n.seq), Kind: "task", JobID: pl.JobID, TaskID: pl.TaskID, Slots: slots,
			CommandLine: tr.CommandLine, Env: tr.Env, MaxWallClockMillis: tr.MaxWallClock.Milliseconds(), UserIdentity: tr.UserIdentity}
		r.JobPrepTaskID = tr.JobPrepTaskID
		waiting := starts[i].Preparing
		lr := &run{id: r.RunID, kind: "task", jobID: pl.JobID, taskID: pl.TaskID, slots: slots, spec: r, retries: tr.RetryCount, maxRetr: tr.MaxRetries, waiting: waiting}
		stopped := s.killedSince(gen, account, pl.JobID, pl.TaskID)
		switch {
		case stopped && waiting:
			ended = append(ended, endedRun{n.ID, lr})
			continue
		case stopped:
			// Sent with its kill: the agent drops it and reports it killed.
			lr.killed = true
			n.kill = append(n.kill, r.RunID)
		}
		n.runs[r.RunID] = lr
		if waiting {
			settle = append(settle, [2]string{n.ID, pl.JobID})
		} else {
			n.outbox = append(n.outbox, *r)
		}
		s.setState(n, NodeRunning)
		s.lastNode(account, pl.JobID, pl.TaskID, n)
		s.wakeNode(n)
	}
	s.mu.Unlock()
	for _, e := range ended {
		go s.endKilled(context.WithoutCancel(ctx), account, e.nodeID, e.r)
	}
	for _, w := range settle {
		// The preparation task may have ended since: settle looks again.
		go s.settle(context.WithoutCancel(ctx), account, w[0], w[1])
	}
	for nodeID, runs := range gone {
		go s.requeue(context.Background(), account, runs, nodeID)
	}
}

func itoa(i int) string {
	if i == 0 {
		return "0"
	}
	var b [20]byte
	p := len(b)
	for i > 0 {
		p--
		b[p] = byte('0' + i%10)
		i /= 10
	}
	return string(b[p:])
}
