package compute

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"custody"
	"custody/batch"
	"custody/node"
)

// Store is the persistence of pools.
type Store interface {
	// CreatePool inserts p (an existing id is KindConflict PoolExists).
	CreatePool(ctx context.Context, p *Pool) error
	// Pool returns a pool (KindNotFound PoolNotFound).
	Pool(ctx context.Context, account, id string) (*Pool, error)
	ListPools(ctx context.Context, account string) ([]*Pool, error)
	// AllPools lists the pools of every account.
	AllPools(ctx context.Context) ([]*Pool, error)
	// UpdatePool replaces a pool if its stored ETag is etag (else
	// KindPreconditionFailed).
	UpdatePool(ctx context.Context, p *Pool, etag string) error
	DeletePool(ctx context.Context, account, id string) error
}

// Keys gives the compute service an account's DEK. At runtime it is
// *batch.Service.
type Keys interface {
	DEK(ctx context.Context, account string) (*batch.Account, *batch.DEK, error)
}

// Launcher starts local node agents. At runtime it is implemented in
// server/ by running `custody node` as a child process.
type Launcher interface {
	// Launch starts an agent for a node with the given credential. exited
	// is closed when the agent process ends.
	Launch(account, poolID, nodeID, credential string) (stop func(), exited <-chan struct{}, err error)
}

// Certificates gives the data of the certificates a pool references. At
// runtime it is implemented over the batch data store; nil means none are
// installed.
type Certificates interface {
	NodeCertificate(ctx context.Context, account, algorithm, thumbprint string) (node.Certificate, error)
}

// TokenIssuer issues managed identity tokens for the identities of pools.
// At runtime it is identity.Service.ManagedIdentityToken.
type TokenIssuer func(ctx context.Context, principalID, resource string) (token string, expires time.Time, err error)

// Config configures the compute service.
type Config struct {
	Store Store
	// TaskDiskLimit, if positive, caps each task's disk budget below its
	// vmSize's temporary disk.
	TaskDiskLimit int64
	// Nodes keeps the credentials of remote nodes across restarts; nil
	// keeps them in memory only.
	Nodes        NodeStore
	Keys         Keys
	Tasks        Tasks
	Certificates Certificates
	Tokens       TokenIssuer
	// Identities resolves the user-assigned identities of pools.
	Identities batch.Identities
	// Launcher starts local nodes; nil means nodes only join from outside.
	Launcher Launcher
	// Poll is how long a node's sync may be held (default 10 s); a node
	// that has not synced for LostAfter (default 3 x Poll + 5 s) is lost.
	Poll      time.Duration
	LostAfter time.Duration
	Logger    *slog.Logger
	Now       func() time.Time
	// Recover, if set, runs once when Run starts, before any scheduling: it
	// requeues the tasks a previous server process left running
	// (requeueCount+1), except those whose node hold reports true, which it
	// leaves running and returns (see Service.recover).
	Recover func(ctx context.Context, hold func(nodeID string) bool) []HeldTask
	// JobReleased, if set, completes a job left terminating once its
	// release tasks ran (batch.DataService.FinishTermination).
	JobReleased func(ctx context.Context, account, jobID string) error
	// Fence, if set, is asked before Run's first pass and before each pass
	// (reconcile, lost-node detection, scheduling) whether this server may
	// still act; an error ends Run at once, stopping local nodes. Replicas
	// pass their hold on the cluster's active lease.
	Fence func(ctx context.Context) error
}

// Service runs pools: it keeps their nodes at the target count, talks to
// node agents, and places tasks on free slots.
type Service struct {
	cfg Config
	log *slog.Logger

	mu    sync.Mutex
	nodes map[string]*liveNode // by node id
	// drain is closed by Drain when the server shuts down.
	drain     chan struct{}
	drainInit sync.Once
	drainOnce sync.Once
	// quotaMu serialises pool creates and resizes, so that concurrent
	// requests cannot pass the account's quotas together.
	quotaMu sync.Mutex
	byCred  map[string]string // credential hash -> node id
	locked  map[string]bool   // accounts whose key is inaccessible
	// taskNodes remembers where each task last ran (account/job/task).
	taskNodes map[string]taskNode
	// kills are the latest KillTask calls, numbered by killGen, so a start
	// that was under way when its task or job was stopped is killed too.
	kills   []killRecord
	killGen uint64
	kick      chan struct{}
	stopped   chan struct{}
	// recovered is closed once Run has loaded the stored remote nodes and
	// dealt with the tasks a former server left running, so that nodes
	// resume from the whole record.
	recovered     chan struct{}
	recoveredOnce sync.Once
}

// run is a task or start task a node is running.
type run struct {
	id      string
	kind    string
	jobID   string
	taskID  string
	slots   int
	spec    *node.Run // dropped once delivered
	retries int
	maxRetr int
	killed  bool // terminate asked
	// waiting: the task waits on the node, in state preparing, for its
	// job's preparation task; it has not been sent to the agent.
	waiting bool
}

// liveNode is a node's state in memory.
type liveNode struct {
	Node
	credHash string
	slots    int
	fill     string
	joined   bool
	// queues: the agent holds runs beyond its free slots and starts each
	// the moment a slot frees (it said so at join), so the scheduler may
	// dispatch ahead (see DispatchAhead).
	queues bool
	// shortEnd is when a run of the node last ended that had run for less
	// than DispatchAheadWindow (zero: none).
	shortEnd time.Time
	outbox   []node.Run
	kill     []string
	runs     map[string]*run
	wake     chan struct{}
	drop     bool
	// dropPending is set until the agent has been told to drop, so a
	// quick unlock cannot skip the kill of runs started before the lock.
	dropPending bool
	leave       bool
	reboot      bool
	configGen   int64
	stop        func()
	startRun    *node.Run
	seq         int
	// fileOut are file requests to send at the next sync; fileCalls are
	// the requests waiting for the agent's reply, by id.
	fileOut   []node.FileRequest
	fileCalls map[string]chan *FileAnswer
	// held are tasks a previous server process left running on this
	// (remote) node: they stay running until its agent resumes (they are
	// taken back if it still holds them) or joins again, having killed its
	// runs, or the node is lost; then they are requeued.
	held []HeldTask
	// resumable says the node was loaded from the store by this server
	// and its agent has not joined it since: the agent's next sync may
	// resume it with the runs it holds (see Service.resume).
	resumable bool
	// jobs are the jobs whose tasks the node was given, with their
	// preparation and release tasks there (jobtasks.go), by lower-cased id.
	jobs map[string]*nodeJob
}

// New returns a compute service.
func New(cfg Config) *Service {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Poll <= 0 {
		cfg.Poll = 10 * time.Second
	}
	if cfg.LostAfter <= 0 {
		cfg.LostAfter = 3*cfg.Poll + 5*time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Service{cfg: cfg, log: cfg.Logger, nodes: map[string]*liveNode{}, byCred: map[string]string{},
		locked: map[string]bool{}, kick: make(chan struct{}, 1), recovered: make(chan struct{})}
}

func (s *Service) now() time.Time { return s.cfg.Now().UTC() }

func newNodeID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return "tvmps_" + hex.EncodeToString(b) + "_d"
}

// NewCredential returns a fresh node credential.
func NewCredential() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func hashCredential(c string) string {
	h := sha256.Sum256([]byte("custody/node-credential/v1\x00" + c))
	return hex.EncodeToString(h[:])
}

func poolNotFound(id string) error {
	return custody.Errorf(custody.KindNotFound, "PoolNotFound", "The specified pool %q does not exist.", id)
}

// ---- pools ----

// PoolRef is the Ref a pool's spec is sealed for.
func PoolRef(id string) batch.Ref {
	return batch.Ref{Kind: "pool", ID: strings.ToLower(id), Field: "spec"}
}

// seal seals a pool's spec with the account's DEK.
func seal(a *batch.Account, dek *batch.DEK, p *Pool) error {
	b, err := json.Marshal(p.Spec)
	if err != nil {
		return err
	}
	p.Sealed = dek.Seal(a.UID, PoolRef(p.ID), b)
	return nil
}

func open(a *batch.Account, dek *batch.DEK, p *Pool) error {
	b, err := dek.Open(a.UID, PoolRef(p.ID), p.Sealed)
	if err != nil {
		return custody.Internal(err, "open pool %s", p.ID)
	}
	return json.Unmarshal(b, &p.Spec)
}

func newETag() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return "0x8DD" + strings.ToUpper(hex.EncodeToString(b))[:13]
}

// CreatePool adds a pool and starts growing it to its target.
func (s *Service) CreatePool(ctx context.Context, account string, p *Pool) (*Pool, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	a, dek, err := s.cfg.Keys.DEK(ctx, account)
	if err != nil {
		return nil, err
	}
	s.quotaMu.Lock()
	defer s.quotaMu.Unlock()
	others, err := s.cfg.Store.ListPools(ctx, a.Name)
	if err != nil {
		return nil, err
	}
	live := 0
	for _, o := range others {
		if o.State != PoolDeleting {
			live++
		}
	}
	if q := a.Quotas().Pools; live >= q {
		return nil, custody.Errorf(custody.KindConflict, "PoolQuotaReached",
			"The specified account has reached its pool quota (poolQuota %d). Delete a pool first.", q)
	}
	p.ResizeErrors = holdToCoreQuota(a.Quotas(), p, others)
	now := s.now()
	p.Account = a.Name
	p.ETag = newETag()
	p.State, p.StateTransitionTime = PoolActive, now
	p.AllocationState, p.AllocationTime = AllocSteady, now
	if p.Target() > 0 {
		p.AllocationState = AllocResizing
	}
	p.CreatedAt, p.LastModified = now, now
	if err := seal(a, dek, p); err != nil {
		return nil, err
	}
	if err := s.cfg.Store.CreatePool(ctx, p); err != nil {
		return nil, err
	}
	s.Kick()
	return p, nil
}

// Pool returns a pool with its spec opened.
func (s *Service) Pool(ctx context.Context, account, id string) (*Pool, error) {
	a, dek, err := s.cfg.Keys.DEK(ctx, account)
	if err != nil {
		return nil, err
	}
	p, err := s.cfg.Store.Pool(ctx, a.Name, id)
	if err != nil {
		return nil, err
	}
	if err := open(a, dek, p); err != nil {
		return nil, err
	}
	return p, nil
}

// ListPools returns the account's pools with their specs opened.
func (s *Service) ListPools(ctx context.Context, account string) ([]*Pool, error) {
	a, dek, err := s.cfg.Keys.DEK(ctx, account)
	if err != nil {
		return nil, err
	}
	ps, err := s.cfg.Store.ListPools(ctx, a.Name)
	if err != nil {
		return nil, err
	}
	for _, p := range ps {
		if err := open(a, dek, p); err != nil {
			return nil, err
		}
	}
	return ps, nil
}

// UpdatePool applies fn to a pool and stores it (if etag is not empty, only
// if the pool still has it).
func (s *Service) UpdatePool(ctx context.Context, account, id, etag string, fn func(*Pool) error) (*Pool, error) {
	a, dek, err := s.cfg.Keys.DEK(ctx, account)
	if err != nil {
		return nil, err
	}
	p, err := s.cfg.Store.Pool(ctx, a.Name, id)
	if err != nil {
		return nil, err
	}
	if etag != "" && etag != "*" && etag != p.ETag {
		return nil, custody.Errorf(custody.KindPreconditionFailed, "ConditionNotMet", "The pool %q has changed (ETag %s, not %s).", id, p.ETag, etag)
	}
	if p.State == PoolDeleting {
		return nil, custody.Errorf(custody.KindConflict, "PoolBeingDeleted", "The pool %q is being deleted.", id)
	}
	if err := open(a, dek, p); err != nil {
		return nil, err
	}
	prev := p.ETag
	if err := fn(p); err != nil {
		return nil, err
	}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	p.ETag, p.LastModified = newETag(), s.now()
	if err := seal(a, dek, p); err != nil {
		return nil, err
	}
	if err := s.cfg.Store.UpdatePool(ctx, p, prev); err != nil {
		return nil, err
	}
	s.bumpConfig(a.Name, p.ID)
	s.Kick()
	return p, nil
}

// Resize sets a pool's target node counts.
func (s *Service) Resize(ctx context.Context, account, id, etag string, dedicated, low int, timeout time.Duration) error {
	a, _, err := s.cfg.Keys.DEK(ctx, account)
	if err != nil {
		return err
	}
	s.quotaMu.Lock()
	defer s.quotaMu.Unlock()
	others, err := s.cfg.Store.ListPools(ctx, a.Name)
	if err != nil {
		return err
	}
	_, err = s.UpdatePool(ctx, account, id, etag, func(p *Pool) error {
		if p.AllocationState == AllocStopping {
			return custody.Errorf(custody.KindConflict, "PoolNotSteady", "The pool %q is stopping a resize; wait until it is steady.", id)
		}
		if err := validateTargets(id, dedicated, low); err != nil {
			return err
		}
		p.TargetDedicated, p.TargetLowPriority = dedicated, low
		if timeout > 0 {
			p.ResizeTimeout = timeout
		}
		p.AllocationState, p.AllocationTime = AllocResizing, s.now()
		p.ResizeErrors = holdToCoreQuota(a.Quotas(), p, others)
		return nil
	})
	return err
}

// StopResize stops a resize: the target becomes the current node count.
func (s *Service) StopResize(ctx context.Context, account, id, etag string) error {
	_, err := s.UpdatePool(ctx, account, id, etag, func(p *Pool) error {
		if p.AllocationState != AllocResizing {
			return custody.Errorf(custody.KindConflict, "PoolNotResizing", "The pool %q is not resizing.", id)
		}
		n := len(s.poolNodes(p.Account, p.ID))
		p.TargetDedicated, p.TargetLowPriority = min(n, p.TargetDedicated), max(0, n-p.TargetDedicated)
		p.AllocationState, p.AllocationTime = AllocStopping, s.now()
		return nil
	})
	return err
}

// DeletePool marks a pool deleting; its nodes leave and then it is gone.
func (s *Service) DeletePool(ctx context.Context, account, id string) error {
	a, _, err := s.cfg.Keys.DEK(ctx, account)
	if err != nil {
		return err
	}
	p, err := s.cfg.Store.Pool(ctx, a.Name, id)
	if err != nil {
		return err
	}
	if p.State == PoolDeleting {
		return nil
	}
	prev := p.ETag
	p.State, p.StateTransitionTime, p.ETag = PoolDeleting, s.now(), newETag()
	if err := s.cfg.Store.UpdatePool(ctx, p, prev); err != nil {
		return err
	}
	s.Kick()
	return nil
}

// DeleteAccountPools removes every node of an account at once (the account
// is being deleted).
func (s *Service) DeleteAccountPools(ctx context.Context, account string) error {
	s.mu.Lock()
	var gone []*liveNode
	for _, n := range s.nodes {
		if strings.EqualFold(n.Account, account) {
			gone = append(gone, n)
		}
	}
	s.mu.Unlock()
	for _, n := range gone {
		s.removeNode(n, false)
	}
	ps, err := s.cfg.Store.ListPools(ctx, account)
	if err != nil {
		return err
	}
	for _, p := range ps {
		if err := s.forgetPoolNodes(ctx, account, p.ID); err != nil {
			return err
		}
		if err := s.cfg.Store.DeletePool(ctx, account, p.ID); err != nil && !custody.IsNotFound(err) {
			return err
		}
	}
	return nil
}

// ---- nodes ----

func (s *Service) poolNodes(account, poolID string) []*liveNode {
	var out []*liveNode
	for _, n := range s.nodes {
		if strings.EqualFold(n.Account, account) && strings.EqualFold(n.PoolID, poolID) {
			out = append(out, n)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

func (n *liveNode) snapshot() *Node {
	c := n.Node
	c.RecentTasks = slices.Clone(n.RecentTasks)
	c.Errors = slices.Clone(n.Errors)
	if n.StartTask != nil {
		st := *n.StartTask
		c.StartTask = &st
	}
	c.RunningTasks, c.RunningSlots = 0, 0
	for _, r := range n.runs {
		if r.kind == "task" {
			c.RunningTasks++
			c.RunningSlots += r.slots
		}
	}
	// Runs queued on the node behind busy slots are not running yet.
	c.RunningSlots = min(c.RunningSlots, n.slots)
	c.RunningTasks = min(c.RunningTasks, max(n.slots, 1))
	return &c
}

// Nodes lists a pool's nodes.
func (s *Service) Nodes(ctx context.Context, account, poolID string) ([]*Node, error) {
	a, err := s.account(ctx, account)
	if err != nil {
		return nil, err
	}
	if _, err := s.cfg.Store.Pool(ctx, a, poolID); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*Node
	for _, n := range s.poolNodes(a, poolID) {
		out = append(out, n.snapshot())
	}
	return out, nil
}

// account checks the account is usable and returns its name.
func (s *Service) account(ctx context.Context, account string) (string, error) {
	a, _, err := s.cfg.Keys.DEK(ctx, account)
	if err != nil {
		return "", err
	}
	return a.Name, nil
}

func (s *Service) node(account, poolID, nodeID string) (*liveNode, error) {
	n := s.nodes[nodeID]
	if n == nil || !strings.EqualFold(n.Account, account) || !strings.EqualFold(n.PoolID, poolID) {
		return nil, custody.Errorf(custody.KindNotFound, "NodeNotFound", "The node %q does not exist in pool %q.", nodeID, poolID)
	}
	return n, nil
}

// GetNode returns one node.
func (s *Service) GetNode(ctx context.Context, account, poolID, nodeID string) (*Node, error) {
	a, err := s.account(ctx, account)
	if err != nil {
		return nil, err
	}
	if _, err := s.cfg.Store.Pool(ctx, a, poolID); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	n, err := s.node(a, poolID, nodeID)
	if err != nil {
		return nil, err
	}
	return n.snapshot(), nil
}

// RebootNode kills the node's runs (requeued) and runs its start task again.
func (s *Service) RebootNode(ctx context.Context, account, poolID, nodeID string) error {
	a, err := s.account(ctx, account)
	if err != nil {
		return err
	}
	s.mu.Lock()
	n, err := s.node(a, poolID, nodeID)
	if err != nil {
		s.mu.Unlock()
		return err
	}
	lost := s.takeRuns(n)
	n.reboot = true
	n.joined = false
	s.setState(n, NodeRebooting)
	n.StartTask = nil
	n.outbox = nil
	s.wakeNode(n)
	s.mu.Unlock()
	s.requeue(context.WithoutCancel(ctx), n.Account, lost, nodeID)
	return nil
}

// RemoveNodes removes nodes from a pool: their runs are requeued, their
// agents leave, and the pool's target shrinks by as many.
func (s *Service) RemoveNodes(ctx context.Context, account, poolID string, nodeIDs []string) error {
	if len(nodeIDs) == 0 || len(nodeIDs) > 100 {
		return custody.Errorf(custody.KindInvalid, "InvalidPropertyValue", "nodeList must name 1 to 100 nodes.")
	}
	a, err := s.account(ctx, account)
	if err != nil {
		return err
	}
	var ns []*liveNode
	s.mu.Lock()
	for _, id := range nodeIDs {
		n, err := s.node(a, poolID, id)
		if err != nil {
			s.mu.Unlock()
			return err
		}
		ns = append(ns, n)
	}
	s.mu.Unlock()
	_, err = s.UpdatePool(ctx, a, poolID, "", func(p *Pool) error {
		if p.TargetDedicated >= len(ns) {
			p.TargetDedicated -= len(ns)
		} else {
			p.TargetLowPriority = max(0, p.TargetLowPriority-(len(ns)-p.TargetDedicated))
			p.TargetDedicated = 0
		}
		p.AllocationState, p.AllocationTime = AllocResizing, s.now()
		return nil
	})
	if err != nil {
		return err
	}
	for _, n := range ns {
		s.removeNode(n, true)
	}
	return nil
}

func (s *Service) setState(n *liveNode, state string) {
	if n.State != state {
		n.State, n.StateTransitionTime = state, s.now()
	}
}

func (s *Service) wakeNode(n *liveNode) {
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

// takeRuns removes every task run of n and returns them for requeueing.
// Caller holds s.mu.
func (s *Service) takeRuns(n *liveNode) []*run {
	var out []*run
	for id, r := range n.runs {
		if r.kind == "task" {
			out = append(out, r)
		}
		n.kill = append(n.kill, id)
		delete(n.runs, id)
	}
	return out
}

func (s *Service) requeue(ctx context.Context, account string, runs []*run, nodeID string) {
	now := s.now()
	var ends []TaskEnd
	for _, r := range runs {
		if r.killed {
			continue
		}
		ends = append(ends, TaskEnd{JobID: r.jobID, TaskID: r.taskID, Result: RunResult{NodeID: nodeID, ExitCode: -1, StartTime: now, EndTime: now, Outcome: OutcomeRequeue}})
	}
	if len(ends) > 0 {
		if err := s.cfg.Tasks.FinishTasks(ctx, account, ends); err != nil {
			s.log.Warn("compute: requeue tasks", "account", account, "tasks", len(ends), "err", err)
		}
	}
	s.Kick()
}

// removeNode takes a node out: its runs are requeued, its stored credential
// deleted and its agent told to leave (or stopped, for local nodes).
func (s *Service) removeNode(n *liveNode, requeue bool) {
	if !n.Local {
		// Before the node leaves memory, so that no request can find the
		// credential in the store again.
		s.forgetNode(context.Background(), n.Account, n.PoolID, n.ID)
	}
	s.mu.Lock()
	lost := s.takeRuns(n)
	held := n.held
	n.held = nil
	n.leave = true
	s.setState(n, NodeLeavingPool)
	delete(s.nodes, n.ID)
	delete(s.byCred, n.credHash)
	s.wakeNode(n)
	stop := n.stop
	// Release tasks it was to run are gone with it.
	var releasing []string
	for _, nj := range n.jobs {
		if nj.releaseRun != nil || (nj.release != nil && nj.release.State == "running") {
			releasing = append(releasing, nj.jobID)
		}
	}
	s.mu.Unlock()
	s.released(context.Background(), n.Account, releasing...)
	if requeue {
		s.requeue(context.Background(), n.Account, lost, n.ID)
		s.requeueHeld(context.Background(), held)
	}
	if stop != nil {
		// Give the agent a moment to hear it must leave, then stop it.
		time.AfterFunc(2*time.Second, stop)
	}
}

// KillTask kills a task's run wherever it runs (terminate, delete). The
// task's state is the caller's to set.
func (s *Service) KillTask(account, jobID, taskID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.killGen++
	s.kills = append(s.kills, killRecord{gen: s.killGen, account: strings.ToLower(account), jobID: jobID, taskID: taskID})
	if len(s.kills) > maxKillRecords {
		s.kills = s.kills[len(s.kills)-maxKillRecords/2:]
	}
	for _, n := range s.nodes {
		if !strings.EqualFold(n.Account, account) {
			continue
		}
		for id, r := range n.runs {
			task := r.kind == "task" && r.jobID == jobID && (taskID == "" || r.taskID == taskID)
			prep := r.kind == kindJobPrep && taskID == "" && r.jobID == jobID
			if !task && !prep {
				continue
			}
			if r.waiting {
				// Waiting for its job's preparation task: never sent.
				delete(n.runs, id)
				s.refreshState(n)
				go s.endKilled(context.Background(), account, n.ID, r)
				continue
			}
			if i := slices.IndexFunc(n.outbox, func(o node.Run) bool { return o.RunID == id }); i >= 0 {
				// Not sent yet: it never reaches the node.
				n.outbox = slices.Delete(n.outbox, i, i+1)
				delete(n.runs, id)
				s.refreshState(n)
				continue
			}
			r.killed = true
			n.kill = append(n.kill, id)
			s.wakeNode(n)
		}
		s.dispatchReleases(n)
	}
}

// KillJob kills every run of a job (terminate, delete).
func (s *Service) KillJob(account, jobID string) { s.KillTask(account, jobID, "") }

// Kick asks the scheduler to look for work now.
func (s *Service) Kick() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// ResolveIdentity returns the ids of a user-assigned identity to attach to
// a pool.
func (s *Service) ResolveIdentity(ctx context.Context, resourceID string) (PoolIdentity, error) {
	if s.cfg.Identities == nil {
		return PoolIdentity{}, custody.Errorf(custody.KindInvalid, "FeatureNotSupported", "Managed identities on pools are not available on this server.")
	}
	u, err := s.cfg.Identities.UserAssigned(ctx, resourceID)
	if custody.IsNotFound(err) {
		return PoolIdentity{}, custody.Errorf(custody.KindInvalid, "InvalidPropertyValue", "The user-assigned identity %s does not exist. Create it first (custody identity create).", resourceID)
	}
	if err != nil {
		return PoolIdentity{}, err
	}
	return PoolIdentity{ResourceID: resourceID, ClientID: u.ClientID, PrincipalID: u.PrincipalID}, nil
}

// DeleteAccountData removes an account's pools and nodes (batch.DataDeleter).
func (s *Service) DeleteAccountData(ctx context.Context, account string) error {
	return s.DeleteAccountPools(ctx, account)
}

// NodeStates returns the states of a pool's nodes whatever the state of the
// account's key (they hold no customer data); for operators and tests.
func (s *Service) NodeStates(account, poolID string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, n := range s.poolNodes(account, poolID) {
		out = append(out, n.State)
	}
	return out
}

// killRecord is one KillTask call (taskID "" for the whole job).
type killRecord struct {
	gen                    uint64
	account, jobID, taskID string
}

// maxKillRecords bounds the kills kept: a start takes one scheduling pass,
// far fewer kills than this in any realistic stretch.
const maxKillRecords = 4096

// killedSince reports whether a task was stopped (KillTask) after kill
// generation gen. Caller holds s.mu.
func (s *Service) killedSince(gen uint64, account, jobID, taskID string) bool {
	account = strings.ToLower(account)
	for i := len(s.kills) - 1; i >= 0 && s.kills[i].gen > gen; i-- {
		k := s.kills[i]
		if k.account == account && k.jobID == jobID && (k.taskID == "" || k.taskID == taskID) {
			return true
		}
	}
	return false
}
