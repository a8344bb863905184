package node

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"custody/node/sandbox"
)

// Version is the agent version reported to the server.
const Version = "1.1.0"

// agentPingEvery is how long a connection to the server may be silent
// before the agent pings it, and how long it waits for the answer before it
// drops the connection.
const agentPingEvery = 5 * time.Second

// reportTimeout bounds one report call; an unanswered one is sent again.
const reportTimeout = 30 * time.Second

// AgentConfig configures an agent.
type AgentConfig struct {
	// Server is the base URL of the node channel, https://batch.{domain}:{port}.
	Server string
	// Connect, if set, is the address every connection to the server dials
	// (so no DNS is needed for the server's names).
	Connect string
	// CAPool verifies the server's certificate (nil: system roots).
	CAPool *x509.CertPool
	// Credential is the node credential.
	Credential string
	// Root is the node's root directory.
	Root string
	// CertificatesDir is where the pool's certificates are installed
	// (default: {Root}.certs, beside the root and so outside every
	// directory the file API serves).
	CertificatesDir string
	// Listen is the loopback address of the managed identity endpoint.
	Listen string
	Logger *slog.Logger
	// Runner runs the tasks (nil: a new one, whose reaper waits for every
	// child of the process).
	Runner *Runner
	// UnsafeSharedHost runs tasks as plain processes of the agent's own
	// user, without a sandbox: they can read whatever the agent can. Only
	// for hosts that cannot build one (see package sandbox), and said loudly.
	UnsafeSharedHost bool
	// UIDBase is where the agent looks for a free range of task user ids
	// (0: DefaultUIDBase).
	UIDBase int
	// OwnMountNamespace says the agent was started in a mount namespace of
	// its own (the server's local nodes are): its certificate tmpfs then
	// vanishes with it even if it is killed.
	OwnMountNamespace bool
}

// Agent is a running node agent.
type Agent struct {
	cfg    AgentConfig
	log    *slog.Logger
	http   *http.Client
	runner *Runner

	identityKey string
	fileSlots   chan struct{}
	msiURL      string

	// sandbox state (nil with UnsafeSharedHost)
	sbHost *sandbox.Host
	sbNode *sandbox.Node
	users  *uidRange

	mu      sync.Mutex
	nodeID  string
	account string
	poolID  string
	poll    time.Duration
	runs    map[string]*Process
	// held are the runs the agent holds, for its syncs: those queued,
	// running, and those that ended and whose report the server has not
	// acknowledged.
	held map[string]RunState
	// queue holds task runs the server dispatched ahead, in order, until
	// a slot frees; used is the slots taken by runs started or starting,
	// slots the node's taskSlotsPerNode (0: no bound). starting are runs
	// being started (true: killed meanwhile); inflight counts them, and
	// idle is signalled when it drops to zero.
	queue    []Run
	used     int
	slots    int
	starting map[string]bool
	inflight int
	idle     *sync.Cond
	finished []RunReport
	config   *Config
	dropped  bool
	kick     chan struct{}
	// lostAfter is how long the server waits for a sync before it declares
	// the node lost; contact is when the server last answered a join, sync
	// or report. outOfReach is set when the watchdog killed the runs because
	// contact is too old; abandoned are the runs it killed, not reported.
	lostAfter  time.Duration
	contact    time.Time
	outOfReach bool
	abandoned  map[string]bool
}

// NewAgent returns an agent for cfg; Run starts it.
func NewAgent(cfg AgentConfig) (*Agent, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Server == "" || cfg.Credential == "" || cfg.Root == "" {
		return nil, errors.New("node: the server URL, the node credential and the root directory are required")
	}
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	root, err := filepath.Abs(cfg.Root)
	if err != nil {
		return nil, fmt.Errorf("node: root directory: %w", err)
	}
	cfg.Root = root
	d := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	tr := &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: cfg.CAPool, MinVersion: tls.VersionTLS12},
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if cfg.Connect != "" {
				addr = cfg.Connect
			}
			return d.DialContext(ctx, network, addr)
		},
		MaxIdleConnsPerHost: 8,
		ForceAttemptHTTP2:   true,
		// A frozen server's kernel accepts connections, but the handshake
		// never ends.
		TLSHandshakeTimeout: agentPingEvery,
		// A server that stops answering without closing the connection (a
		// frozen process, a cut-off machine, a frozen active behind a load
		// balancer) is given up after a ping goes unanswered, so calls are
		// sent again on a new connection, which may reach a live replica.
		HTTP2: &http.HTTP2Config{SendPingTimeout: agentPingEvery, PingTimeout: agentPingEvery},
	}
	a := &Agent{
		cfg: cfg, log: cfg.Logger, http: &http.Client{Transport: tr},
		runs: map[string]*Process{}, held: map[string]RunState{}, kick: make(chan struct{}, 1), abandoned: map[string]bool{},
		identityKey: randomHex(24), fileSlots: make(chan struct{}, maxFileAnswers), starting: map[string]bool{},
	}
	a.idle = sync.NewCond(&a.mu)
	return a, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// Run joins the pool and works until ctx is done or the server tells the
// node to leave. Task processes die with the agent.
//
// The agent kills all its runs before it joins again (told to rejoin or
// reboot). When it has not reached the server for three quarters of the
// time after which the server declares the node lost (and requeues its runs
// on other nodes), it kills its runs too, without reporting them, and joins
// again as soon as it reaches the server: a task never runs here and
// elsewhere at once, whether the server restarted, lost the node, or cannot
// be reached.
func (a *Agent) Run(ctx context.Context) error {
	if err := os.MkdirAll(a.cfg.Root, 0o755); err != nil {
		return err
	}
	if !a.cfg.UnsafeSharedHost {
		if err := a.setUpSandbox(); err != nil {
			return err
		}
		defer a.tearDownSandbox()
	}
	_ = EnableSubreaper()
	a.runner = a.cfg.Runner
	if a.runner == nil {
		a.runner = NewRunner()
	}
	ln, err := net.Listen("tcp", a.cfg.Listen)
	if err != nil {
		return fmt.Errorf("node: listen for the identity endpoint: %w", err)
	}
	base := "http://" + ln.Addr().String()
	a.msiURL = base + "/msi/token"
	srv := &http.Server{Handler: a.localHandler(), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	defer srv.Close()
	defer a.killAll()
	reporting := false

	host, _ := os.Hostname()
join:
	var jr JoinResponse
	for {
		err = a.call(ctx, "/node/v1/join", JoinRequest{AgentVersion: Version, Root: a.cfg.Root, Hostname: host, QueueRuns: true}, &jr)
		if err == nil {
			a.touch()
			break
		}
		var pe *protocolError
		if errors.As(err, &pe) && pe.status < 500 {
			return err
		}
		a.log.Warn("node: join failed; retrying", "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
	a.mu.Lock()
	a.nodeID, a.account, a.poolID = jr.NodeID, jr.Account, jr.PoolID
	a.poll = time.Duration(jr.PollSeconds) * time.Second
	a.slots = jr.TaskSlots
	a.lostAfter = time.Duration(jr.LostAfterMillis) * time.Millisecond
	if a.lostAfter <= 0 {
		a.lostAfter = 3*a.poll + 5*time.Second
	}
	a.outOfReach = false
	a.mu.Unlock()
	if err := a.sandboxNode(jr); err != nil {
		return err
	}
	a.log.Info("node joined pool", "node", jr.NodeID, "pool", jr.PoolID, "account", jr.Account)

	if !reporting {
		reporting = true
		go a.reportLoop(ctx)
		go a.watchdog(ctx)
	}
	failures := 0
	for ctx.Err() == nil {
		var resp SyncResponse
		err := a.sync(ctx, &resp)
		if a.takeOutOfReach() {
			// The server may have requeued the runs the watchdog killed,
			// or may still count them: joining again settles it.
			a.log.Warn("node: the server was out of reach too long; runs were killed, joining again")
			a.abandonAll()
			goto join
		}
		if err != nil {
			var pe *protocolError
			if errors.As(err, &pe) && (pe.status == http.StatusUnauthorized || pe.status == http.StatusNotFound) {
				a.log.Info("node: the server no longer knows this node; stopping", "err", err)
				return nil
			}
			failures++
			a.log.Warn("node: sync failed", "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(min(time.Duration(failures)*200*time.Millisecond, 2*time.Second)):
			}
			continue
		}
		failures = 0
		a.touch()
		a.answerFiles(ctx, resp.Files)
		if a.apply(resp) {
			return nil
		}
		if resp.Reboot {
			a.log.Info("node: rebooting (runs killed, joining again)")
			goto join
		}
		if resp.Rejoin {
			a.log.Info("node: the server asks the node to join again (runs killed)")
			goto join
		}
	}
	return nil
}

type protocolError struct {
	status int
	body   string
}

func (e *protocolError) Error() string {
	return fmt.Sprintf("server answered %d: %s", e.status, e.body)
}

func (a *Agent) call(ctx context.Context, path string, in, out any) error {
	b, err := json.Marshal(in)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(a.cfg.Server, "/")+path, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", CredentialScheme+" "+a.cfg.Credential)
	resp, err := a.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		return &protocolError{status: resp.StatusCode, body: string(body)}
	}
	if out != nil && len(body) > 0 {
		return json.Unmarshal(body, out)
	}
	return nil
}

// sync sends one sync; a call that hangs gives up after the poll interval
// plus the lost timeout.
func (a *Agent) sync(ctx context.Context, resp *SyncResponse) error {
	a.mu.Lock()
	limit := a.poll + a.lostAfter
	a.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	a.mu.Lock()
	req := SyncRequest{NodeID: a.nodeID, Running: make([]string, 0, len(a.runs)), Runs: make([]RunState, 0, len(a.held))}
	for id := range a.runs {
		req.Running = append(req.Running, id)
	}
	for _, r := range a.held {
		req.Runs = append(req.Runs, r)
	}
	if a.config != nil {
		req.HaveConfig = a.config.Generation
	}
	a.mu.Unlock()
	return a.call(ctx, "/node/v1/sync", req, resp)
}

// touch records that the server answered.
func (a *Agent) touch() {
	a.mu.Lock()
	a.contact = time.Now()
	a.mu.Unlock()
}

func (a *Agent) takeOutOfReach() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := a.outOfReach
	a.outOfReach = false
	return out
}

// watchdog kills every run once the server has not answered for three
// quarters of its lost timeout: by the time the server declares the node
// lost and requeues the runs on other nodes, they are dead here. The killed
// runs are not reported (the server requeues them, when it declares the
// node lost or when the agent joins again).
func (a *Agent) watchdog(ctx context.Context) {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		a.mu.Lock()
		since, limit := time.Since(a.contact), a.lostAfter*3/4
		out := len(a.runs) > 0 && limit > 0 && since > limit
		if out {
			a.outOfReach = true
		}
		a.mu.Unlock()
		if out {
			a.log.Warn("node: no answer from the server; killing every run before it declares the node lost", "since", since.Round(time.Millisecond))
			a.abandonAll()
		}
	}
}

// abandonAll kills every run without reporting it.
func (a *Agent) abandonAll() {
	a.mu.Lock()
	for id := range a.runs {
		a.abandoned[id] = true
	}
	for id := range a.starting {
		a.abandoned[id] = true
	}
	a.mu.Unlock()
	a.killAll()
}

// apply acts on a sync answer; it returns true when the agent must stop.
func (a *Agent) apply(resp SyncResponse) bool {
	if resp.Leave {
		a.killAll()
		a.dropConfig()
		a.wipeTaskFiles()
		return true
	}
	if resp.Drop || resp.Reboot || resp.Rejoin {
		a.killAll()
		a.dropConfig()
	}
	if resp.Drop {
		// The account's key is inaccessible: its data leaves the node.
		a.wipeTaskFiles()
	}
	if resp.Config != nil {
		if err := a.installConfig(resp.Config); err != nil {
			a.log.Warn("node: install configuration", "err", err)
		}
	}
	// New task runs join the queue before the kills are applied, so a
	// kill sent with its run drops it. Start tasks start at once.
	a.mu.Lock()
	var now []Run
	for _, r := range resp.Runs {
		if r.Kind == "task" {
			a.queue = append(a.queue, r)
			a.held[r.RunID] = RunState{RunID: r.RunID, Kind: r.Kind, JobID: r.JobID, TaskID: r.TaskID}
		} else {
			a.inflight++
			a.starting[r.RunID] = false
			now = append(now, r)
		}
	}
	a.mu.Unlock()
	for _, r := range now {
		go a.start(r)
	}
	for _, id := range resp.Kill {
		a.kill(id)
	}
	a.pump()
	return false
}

// kill kills a run, or drops it from the queue (reported killed, never
// started), or marks it to be killed once its start completes.
func (a *Agent) kill(id string) {
	a.mu.Lock()
	if p := a.runs[id]; p != nil {
		a.mu.Unlock()
		p.Kill()
		return
	}
	if _, ok := a.starting[id]; ok {
		a.starting[id] = true
		a.mu.Unlock()
		return
	}
	for i, r := range a.queue {
		if r.RunID == id {
			a.queue = append(a.queue[:i:i], a.queue[i+1:]...)
			a.mu.Unlock()
			now := time.Now().UTC()
			a.finish(RunReport{RunID: id, ExitCode: -1, StartTime: now, EndTime: now, Killed: true})
			return
		}
	}
	a.mu.Unlock()
}

// pump starts queued runs, in order, while they fit the free slots (a run
// that needs more slots than the node has starts alone).
func (a *Agent) pump() {
	a.mu.Lock()
	var next []Run
	for len(a.queue) > 0 {
		r := a.queue[0]
		need := max(r.Slots, 1)
		if a.slots > 0 && a.used > 0 && a.used+need > a.slots {
			break
		}
		a.queue = a.queue[1:]
		a.used += need
		a.inflight++
		a.starting[r.RunID] = false
		next = append(next, r)
	}
	a.mu.Unlock()
	// Sandboxes are built in parallel: each start waits on the kernel more
	// than it works.
	for _, r := range next {
		go a.start(r)
	}
}

// release gives back the slots of a task run that ended or never started,
// and starts what fits.
func (a *Agent) release(r Run) {
	if r.Kind != "task" {
		return
	}
	a.mu.Lock()
	a.used = max(a.used-max(r.Slots, 1), 0)
	a.mu.Unlock()
	a.pump()
}

// started ends a run's start: it is no longer starting, and is killed now
// if a kill came meanwhile.
func (a *Agent) started(id string, p *Process) {
	a.mu.Lock()
	killed := a.starting[id]
	delete(a.starting, id)
	if p != nil {
		a.runs[id] = p
	}
	a.inflight--
	if a.inflight == 0 {
		a.idle.Broadcast()
	}
	a.mu.Unlock()
	if killed && p != nil {
		p.Kill()
	}
}

// killAll kills every run, drops the queue, and waits for them to be gone
// (runs being started are killed as their start completes).
func (a *Agent) killAll() {
	a.mu.Lock()
	for _, r := range a.queue {
		delete(a.held, r.RunID) // never started, not reported
	}
	a.queue = nil
	for id := range a.starting {
		a.starting[id] = true
	}
	for a.inflight > 0 {
		a.idle.Wait()
	}
	ps := make([]*Process, 0, len(a.runs))
	for _, p := range a.runs {
		ps = append(ps, p)
	}
	a.mu.Unlock()
	for _, p := range ps {
		p.Kill()
	}
	for _, p := range ps {
		<-p.Done()
	}
}

// dropConfig forgets the pool's customer configuration and removes the
// installed certificates.
func (a *Agent) dropConfig() {
	a.mu.Lock()
	a.config = nil
	a.mu.Unlock()
	a.removeCerts()
}

func (a *Agent) installConfig(c *Config) error {
	dir, err := a.certsDir()
	if err != nil {
		return err
	}
	for _, cert := range c.Certificates {
		data, err := base64.StdEncoding.DecodeString(cert.Data)
		if err != nil {
			return fmt.Errorf("certificate %s: %w", cert.Thumbprint, err)
		}
		ext := ".cer"
		if strings.EqualFold(cert.Format, "pfx") {
			ext = ".pfx"
		}
		name := strings.ToLower(cert.ThumbprintAlgorithm) + "-" + strings.ToLower(cert.Thumbprint)
		if err := a.writeCert(filepath.Join(dir, name+ext), data); err != nil {
			return err
		}
		if cert.Password != "" {
			if err := a.writeCert(filepath.Join(dir, name+".pw"), []byte(cert.Password)); err != nil {
				return err
			}
		}
	}
	a.mu.Lock()
	a.config = c
	a.mu.Unlock()
	return nil
}

// RunDir returns the directory of a run under root.
func RunDir(root string, r Run) string {
	if r.Kind == "starttask" {
		return filepath.Join(root, "startup")
	}
	return filepath.Join(root, "workitems", r.JobID, "job-1", r.TaskID)
}

func (a *Agent) start(r Run) {
	dir := RunDir(a.cfg.Root, r)
	a.mu.Lock()
	if _, dup := a.runs[r.RunID]; dup {
		a.mu.Unlock()
		a.started(r.RunID, nil)
		return
	}
	vars := map[string]string{
		"AZ_BATCH_NODE_ID":                             a.nodeID,
		"AZ_BATCH_POOL_ID":                             a.poolID,
		"AZ_BATCH_ACCOUNT_NAME":                        a.account,
		"AZ_BATCH_NODE_ROOT_DIR":                       a.cfg.Root,
		"AZ_BATCH_NODE_SHARED_DIR":                     filepath.Join(a.cfg.Root, "shared"),
		"AZ_BATCH_NODE_STARTUP_DIR":                    filepath.Join(a.cfg.Root, "startup"),
		"AZ_BATCH_CERTIFICATES_DIR":                    a.cfg.certificatesDir(),
		"AZ_BATCH_TASK_DIR":                            dir,
		"AZ_BATCH_TASK_WORKING_DIR":                    filepath.Join(dir, "wd"),
		"AZ_BATCH_NODE_IS_DEDICATED":                   "true",
		"AZ_BATCH_RESERVED_EPHEMERAL_DISK_SPACE_BYTES": "0",
	}
	if r.Kind != "starttask" {
		vars["AZ_BATCH_JOB_ID"] = r.JobID
		vars["AZ_BATCH_TASK_ID"] = r.TaskID
	}
	if r.JobPrepTaskID != "" {
		prep := RunDir(a.cfg.Root, Run{Kind: KindJobPreparation, JobID: r.JobID, TaskID: r.JobPrepTaskID})
		vars["AZ_BATCH_JOB_PREP_DIR"] = prep
		vars["AZ_BATCH_JOB_PREP_WORKING_DIR"] = filepath.Join(prep, "wd")
	}
	if a.config != nil && len(a.config.Identities) > 0 {
		vars["IDENTITY_ENDPOINT"] = a.msiURL
		vars["IDENTITY_HEADER"] = a.identityKey
		vars["MSI_ENDPOINT"] = a.msiURL
	}
	var accounts []UserAccount
	if a.config != nil {
		accounts = a.config.UserAccounts
	}
	a.mu.Unlock()
	state := RunState{RunID: r.RunID, Kind: r.Kind, JobID: r.JobID, TaskID: r.TaskID}
	spec := Spec{Key: r.RunID, Dir: dir, CommandLine: r.CommandLine, Env: Env(vars, r.Env),
		MaxWallClock: time.Duration(r.MaxWallClockMillis) * time.Millisecond}
	slot := -1
	var err error
	if a.sbNode != nil {
		spec.Sandbox, slot, err = a.sandboxSpec(r, accounts)
	} else {
		err = os.MkdirAll(filepath.Join(a.cfg.Root, "shared"), 0o755)
	}
	var p *Process
	if err == nil {
		p, err = a.runner.Start(spec)
	}
	if err != nil {
		a.releaseSlot(slot)
		a.mu.Lock()
		abandoned := a.abandoned[r.RunID]
		delete(a.abandoned, r.RunID)
		if abandoned {
			delete(a.held, r.RunID)
		} else {
			a.held[r.RunID] = state
		}
		a.mu.Unlock()
		a.started(r.RunID, nil)
		a.release(r)
		if !abandoned {
			now := time.Now().UTC()
			a.finish(RunReport{RunID: r.RunID, ExitCode: -1, StartTime: now, EndTime: now, StartError: err.Error()})
		}
		return
	}
	a.mu.Lock()
	a.held[r.RunID] = state
	a.mu.Unlock()
	a.started(r.RunID, p)
	go func() {
		res := p.Wait()
		if slot >= 0 {
			// The next task of scope task may get the same user: this one's
			// files go to root first.
			disown(dir)
		}
		a.releaseSlot(slot)
		a.release(r)
		a.mu.Lock()
		delete(a.runs, r.RunID)
		abandoned := a.abandoned[r.RunID]
		delete(a.abandoned, r.RunID)
		if abandoned {
			delete(a.held, r.RunID)
		}
		a.mu.Unlock()
		if abandoned {
			return
		}
		a.finish(RunReport{RunID: r.RunID, ExitCode: res.ExitCode, StartTime: res.StartTime.UTC(), EndTime: res.EndTime.UTC(), TimedOut: res.TimedOut, Killed: res.Killed,
			DiskExceeded: res.DiskExceeded, OOMKilled: res.OOMKilled})
	}()
}

// finish queues a run's report; the run stays among those the agent holds,
// ended, until the server acknowledges the report.
func (a *Agent) finish(rep RunReport) {
	a.mu.Lock()
	if h, ok := a.held[rep.RunID]; ok {
		h.Ended = true
		a.held[rep.RunID] = h
	}
	a.finished = append(a.finished, rep)
	a.mu.Unlock()
	select {
	case a.kick <- struct{}{}:
	default:
	}
}

// reportLoop sends finished runs as soon as they end, batching whatever
// finished while the previous report was in flight.
func (a *Agent) reportLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.kick:
		}
		for {
			a.mu.Lock()
			batch := a.finished
			a.finished = nil
			a.mu.Unlock()
			if len(batch) == 0 {
				break
			}
			rctx, cancel := context.WithTimeout(ctx, reportTimeout)
			err := a.call(rctx, "/node/v1/report", ReportRequest{Finished: batch}, nil)
			cancel()
			if err == nil {
				a.touch()
				a.acknowledged(batch)
			}
			if err != nil {
				var pe *protocolError
				if errors.As(err, &pe) && pe.status < 500 && pe.status != http.StatusTooManyRequests {
					a.log.Warn("node: report refused; dropping it", "err", err)
					a.acknowledged(batch)
					continue
				}
				a.log.Warn("node: report failed; retrying", "err", err)
				a.mu.Lock()
				a.finished = append(batch, a.finished...)
				a.mu.Unlock()
				select {
				case <-ctx.Done():
					return
				case <-time.After(500 * time.Millisecond):
				}
			}
		}
	}
}

// acknowledged forgets runs whose reports the server has taken.
func (a *Agent) acknowledged(reports []RunReport) {
	a.mu.Lock()
	for _, r := range reports {
		delete(a.held, r.RunID)
	}
	a.mu.Unlock()
}

// localHandler serves tokens to tasks. (Files go to the server over the
// node channel, see files.go.)
func (a *Agent) localHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /msi/token", a.serveToken)
	return mux
}

func (a *Agent) serveToken(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("X-IDENTITY-HEADER") != a.identityKey || a.identityKey == "" {
		http.Error(w, `{"error":"invalid_request","error_description":"X-IDENTITY-HEADER is missing or wrong"}`, http.StatusUnauthorized)
		return
	}
	a.mu.Lock()
	hasIdentity := a.config != nil && len(a.config.Identities) > 0
	a.mu.Unlock()
	if !hasIdentity {
		http.Error(w, `{"error":"invalid_request","error_description":"no managed identity is available on this node"}`, http.StatusBadRequest)
		return
	}
	q := r.URL.Query()
	req := TokenRequest{Resource: q.Get("resource"), ClientID: q.Get("client_id"), ResourceID: q.Get("mi_res_id"), PrincipalID: q.Get("object_id")}
	if req.Resource == "" {
		http.Error(w, `{"error":"invalid_request","error_description":"the resource parameter is required"}`, http.StatusBadRequest)
		return
	}
	var tr TokenResponse
	if err := a.call(r.Context(), "/node/v1/token", req, &tr); err != nil {
		status := http.StatusBadGateway
		var pe *protocolError
		if errors.As(err, &pe) && pe.status >= 400 && pe.status < 500 {
			status = http.StatusBadRequest
		}
		b, _ := json.Marshal(map[string]string{"error": "invalid_request", "error_description": err.Error()})
		http.Error(w, string(b), status)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]string{
		"access_token": tr.AccessToken, "expires_on": strconv.FormatInt(tr.ExpiresOn, 10),
		"resource": tr.Resource, "token_type": "Bearer", "client_id": tr.ClientID,
	})
}
