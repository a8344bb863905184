package crashtest_test

import (
	"context"
	"crypto/x509"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"custody/server"
)

// haFailoverWindow is the longest an API call may keep failing over a
// failover at default settings, as README "Running several replicas" says:
// after a crash the new active serves about 4 s after the kill; a former
// active cut off without a reset loses its lease within the lease
// session's idle timeout (10 s) and the new one waits 3.5 s more.
const haFailoverWindow = 15 * time.Second

// haTaskRun is how long each task's run lasts (the run server holds it).
const haTaskRun = 300 * time.Millisecond

// loadBalancer is a TCP load balancer in front of the replicas, as an
// operator would put one (HAProxy in TCP mode): each connection goes to the
// next replica that accepts it.
type loadBalancer struct {
	ln       net.Listener
	backends []string
	next     atomic.Uint32
	wg       sync.WaitGroup
}

func newLoadBalancer(t *testing.T, backends []string) *loadBalancer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lb := &loadBalancer{ln: ln, backends: backends}
	lb.wg.Add(1)
	go func() {
		defer lb.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go lb.serve(c)
		}
	}()
	t.Cleanup(func() { ln.Close(); lb.wg.Wait() })
	return lb
}

func (lb *loadBalancer) addr() string { return lb.ln.Addr().String() }

func (lb *loadBalancer) serve(c net.Conn) {
	defer c.Close()
	start := int(lb.next.Add(1))
	var up net.Conn
	for i := range lb.backends {
		b := lb.backends[(start+i)%len(lb.backends)]
		var err error
		if up, err = net.DialTimeout("tcp", b, time.Second); err == nil {
			break
		}
	}
	if up == nil {
		return
	}
	defer up.Close()
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(up, c); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, up); done <- struct{}{} }()
	<-done
}

// runServer is what the tasks call: GET /run?task={id} holds the call for
// haTaskRun and then answers, so a run lasts exactly as long as its call.
// A run whose process tree is killed closes its connection, which ends the
// call at once: the server so knows, for every task, when each run began and
// ended, whether it ran to its end, and whether two runs of it were alive at
// once.
type runServer struct {
	srv *http.Server
	url string

	mu    sync.Mutex
	tasks map[string]*taskRuns
	// starts are the times runs began, in order.
	starts []time.Time
}

type taskRuns struct {
	open, starts, ends, cut int
	overlap                 bool
}

func newRunServer(t *testing.T) *runServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rs := &runServer{url: "http://" + ln.Addr().String(), tasks: map[string]*taskRuns{}}
	rs.srv = &http.Server{Handler: http.HandlerFunc(rs.serve)}
	go rs.srv.Serve(ln)
	t.Cleanup(func() { rs.srv.Close() })
	return rs
}

func (rs *runServer) serve(w http.ResponseWriter, r *http.Request) {
	id := r.URL.Query().Get("task")
	rs.mu.Lock()
	tr := rs.tasks[id]
	if tr == nil {
		tr = &taskRuns{}
		rs.tasks[id] = tr
	}
	if tr.open > 0 {
		tr.overlap = true
	}
	tr.open++
	tr.starts++
	rs.starts = append(rs.starts, time.Now())
	rs.mu.Unlock()
	select {
	case <-time.After(haTaskRun):
		_, _ = io.WriteString(w, "done\n")
		rs.mu.Lock()
		tr.open--
		tr.ends++
		rs.mu.Unlock()
	case <-r.Context().Done():
		rs.mu.Lock()
		tr.open--
		tr.cut++
		rs.mu.Unlock()
	}
}

// commandLine is a task's command: one call to the run server.
func (rs *runServer) commandLine() string {
	return `curl -sf -o /dev/null "` + rs.url + `/run?task=$AZ_BATCH_TASK_ID"`
}

func (rs *runServer) ended() int {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	n := 0
	for _, tr := range rs.tasks {
		n += tr.ends
	}
	return n
}

// firstStartAfter is the first run that began after t (zero if none).
func (rs *runServer) firstStartAfter(t time.Time) time.Time {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	for _, s := range rs.starts {
		if s.After(t) {
			return s
		}
	}
	return time.Time{}
}

// haClient calls the cluster through the load balancer with the admin's
// tokens.
type haClient struct {
	t      *testing.T
	client *http.Client
	admin  server.AdminCredentials

	mu     sync.Mutex
	tokens map[string]string
}

func (c *haClient) token(scope string) (string, error) {
	c.mu.Lock()
	tok := c.tokens[scope]
	c.mu.Unlock()
	if tok != "" {
		return tok, nil
	}
	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {c.admin.ClientID}, "client_secret": {c.admin.ClientSecret}, "scope": {scope}}
	resp, err := c.client.PostForm("https://login."+failoverPublic+"/"+c.admin.TenantID+"/oauth2/v2.0/token", form)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var v struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil || v.AccessToken == "" {
		return "", fmt.Errorf("token for %s: %d %v", scope, resp.StatusCode, err)
	}
	c.mu.Lock()
	c.tokens[scope] = v.AccessToken
	c.mu.Unlock()
	return v.AccessToken, nil
}

func (c *haClient) do(method, u, scope, body string) (reply, error) {
	tok, err := c.token(scope)
	if err != nil {
		return reply{}, err
	}
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	if err != nil {
		return reply{}, err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return reply{}, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return reply{resp.StatusCode, resp.Header, b}, nil
}

// must retries a call answered 503 (a failover under way) for up to the
// failover window, then wants one of the statuses.
func (c *haClient) must(method, u, scope, body string, want ...int) reply {
	c.t.Helper()
	deadline := time.Now().Add(haFailoverWindow)
	for {
		r, err := c.do(method, u, scope, body)
		if err == nil {
			for _, w := range want {
				if r.status == w {
					return r
				}
			}
		}
		if time.Now().After(deadline) || (err == nil && r.status != http.StatusServiceUnavailable) {
			c.t.Fatalf("%s %s: %d %s %v", method, u, r.status, r.body, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func haURL(host, path string) string { return "https://" + host + "." + failoverPublic + path }

// TestFailoverWithAgents runs the cluster as an operator would: three
// `custody server` processes on one PostgreSQL database behind a load
// balancer, and remote `custody node` agents that reach the cluster through
// it. The seed's flow (a vault key, and batch accounts encrypted with it
// through user-assigned identities) goes through one replica and is read
// through the others. A job of a few hundred short tasks runs on the
// agents; the active replica is killed with SIGKILL mid-run, twice in a
// row, and just before the second kill one account's access to its key is
// revoked. Then the first replica killed comes back (as a supervisor would
// restart it) and the active is partitioned from PostgreSQL: its lease
// session is cut. It must stop (the process ends) before a standby becomes
// active. Every task must complete exactly once, counted from the tasks'
// own calls, with no two runs of a task alive at once; no API call may fail
// for longer than the failover window; and the new active must lock the
// revoked account within one key probe interval of taking over. The times
// from each kill to the first successful API call and to the first task
// started by the new active are logged (go test -run TestFailoverWithAgents
// -v ./crashtest/).
func TestFailoverWithAgents(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three server processes and three node agents")
	}
	const (
		tasks      = 300
		agents     = 3
		slots      = 4
		probeEvery = 5 * time.Second // --key-probe-interval's default
	)
	dsn := failoverDatabase(t)
	dir := t.TempDir()
	rs := []*replicaProc{startReplica(t, dir, dsn)}
	for rs[0].role() != "active" {
		time.Sleep(20 * time.Millisecond)
	}
	rs = append(rs, startReplica(t, dir, dsn), startReplica(t, dir, dsn))
	t.Cleanup(func() {
		if t.Failed() {
			for i, r := range rs {
				t.Logf("replica %d (%s):\n%s", i, r.addr, r.log)
			}
			if db, err := sql.Open("pgx", dsn); err == nil {
				rows, err := db.Query(`SELECT pid, state, wait_event_type, wait_event, left(query, 120) FROM pg_stat_activity WHERE datname = current_database()`)
				for err == nil && rows.Next() {
					var pid int
					var st, wt, we, q sql.NullString
					_ = rows.Scan(&pid, &st, &wt, &we, &q)
					t.Logf("session %d %s %s %s %s", pid, st.String, wt.String, we.String, q.String)
				}
				db.Close()
			}
		}
	})
	var backends []string
	for _, r := range rs {
		backends = append(backends, r.addr)
	}
	lb := newLoadBalancer(t, backends)
	caPEM, err := os.ReadFile(filepath.Join(dir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	var admin server.AdminCredentials
	if b, err := os.ReadFile(filepath.Join(dir, server.AdminFile)); err != nil || json.Unmarshal(b, &admin) != nil {
		t.Fatalf("admin credentials: %v", err)
	}
	viaLB := &haClient{t: t, admin: admin, tokens: map[string]string{},
		client: &http.Client{Transport: server.Transport(pool, "localhost", lb.addr()), Timeout: 30 * time.Second}}
	// The seed's flow through one replica (a standby: it forwards), reads
	// through the others.
	via := func(r *replicaProc) *haClient {
		return &haClient{t: t, admin: admin, tokens: map[string]string{}, client: r.client}
	}
	seed := via(rs[1])

	sub := "/subscriptions/" + admin.SubscriptionID + "/resourceGroups/rg-ha"
	arm := func(c *haClient, method, path, apiVersion, body string, want ...int) reply {
		t.Helper()
		return c.must(method, haURL("management", path+"?api-version="+apiVersion), armScope, body, want...)
	}
	arm(seed, "PUT", sub, "2021-04-01", `{"location":"westus2"}`, 201)
	identity := func(name string) (id, principal string) {
		var v struct {
			ID         string `json:"id"`
			Properties struct {
				PrincipalID string `json:"principalId"`
			} `json:"properties"`
		}
		arm(seed, "PUT", sub+"/providers/Microsoft.ManagedIdentity/userAssignedIdentities/"+name, "2023-01-31", `{"location":"westus2"}`, 201).decode(t, &v)
		return v.ID, v.Properties.PrincipalID
	}
	mainID, mainPrincipal := identity("ha-main")
	revokeID, revokePrincipal := identity("ha-revoke")
	var sps struct {
		Value []struct {
			ID string `json:"id"`
		} `json:"value"`
	}
	seed.must("GET", haURL("graph", "/v1.0/servicePrincipals?$filter="+url.QueryEscape("appId eq '"+admin.ClientID+"'")), "https://graph.microsoft.com/.default", "", 200).decode(t, &sps)
	if len(sps.Value) != 1 {
		t.Fatalf("admin principal: %+v", sps)
	}
	policy := func(oid string, perms ...string) string {
		b, _ := json.Marshal(perms)
		return fmt.Sprintf(`{"tenantId":%q,"objectId":%q,"permissions":{"keys":%s}}`, admin.TenantID, oid, b)
	}
	arm(seed, "PUT", sub+"/providers/Microsoft.KeyVault/vaults/hakv", "2024-11-01", fmt.Sprintf(`{"location":"westus2","properties":{"tenantId":%q,"sku":{"family":"A","name":"standard"},
		"enablePurgeProtection":true,"softDeleteRetentionInDays":7,"accessPolicies":[%s,%s,%s]}}`, admin.TenantID,
		policy(sps.Value[0].ID, "all"), policy(mainPrincipal, "get", "wrapKey", "unwrapKey"), policy(revokePrincipal, "get", "wrapKey", "unwrapKey")), 200, 201)
	var key struct {
		Key struct {
			KID string `json:"kid"`
		} `json:"key"`
	}
	seed.must("POST", haURL("hakv.vault", "/keys/cmk/create?api-version=7.5"), vaultScope, `{"kty":"RSA","key_size":2048}`, 200).decode(t, &key)
	newAccount := func(name, ident string) string {
		path := sub + "/providers/Microsoft.Batch/batchAccounts/" + name
		r := arm(seed, "PUT", path, "2024-07-01", fmt.Sprintf(`{"location":"westus2","identity":{"type":"UserAssigned","userAssignedIdentities":{%q:{}}},
			"properties":{"encryption":{"keySource":"Microsoft.KeyVault","keyVaultProperties":{"keyIdentifier":%q}}}}`, ident, key.Key.KID), 200, 202)
		for loc := r.header.Get("Location"); loc != ""; {
			if seed.must("GET", loc, armScope, "", 200, 202, 204).status != 202 {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		return path
	}
	mainAcct := newAccount("hamain", mainID)
	revokeAcct := newAccount("harevoke", revokeID)
	// Reads through the other replicas.
	for _, r := range []*replicaProc{rs[0], rs[2]} {
		var a account
		arm(via(r), "GET", mainAcct, "2024-07-01", "", 200).decode(t, &a)
		if a.Properties.Encryption.KeyVaultProperties.KeyIdentifier != key.Key.KID || a.Properties.EncryptionStatus.State == "KeyInaccessible" {
			t.Fatalf("the account read through %s: %+v", r.addr, a.Properties)
		}
	}

	// A pool of remote agents, reaching the cluster through the load
	// balancer.
	batchURL := func(acct, path string) string {
		sep := "?"
		if strings.Contains(path, "?") {
			sep = "&"
		}
		return haURL(acct+".batch", path+sep+"api-version="+batchAPI)
	}
	seed.must("POST", batchURL("hamain", "/pools"), batchScope, fmt.Sprintf(`{"id":"p1","vmSize":"standard_d2s_v3","targetDedicatedNodes":%d,"taskSlotsPerNode":%d}`, agents, slots), 201)
	var agentProcs []*exec.Cmd
	for i := 0; i < agents; i++ {
		var nc struct {
			NodeID, Credential, Server string
		}
		seed.must("POST", batchURL("hamain", "/pools/p1/nodecredentials"), batchScope, "", 201).decode(t, &nc)
		credFile := filepath.Join(t.TempDir(), "node.credential")
		if err := os.WriteFile(credFile, []byte(nc.Credential), 0o600); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(os.Args[0], "node", "--server", nc.Server, "--connect", lb.addr(), "--ca-file", filepath.Join(dir, "ca.pem"),
			"--credential-file", credFile, "--root", filepath.Join(t.TempDir(), "node"))
		cmd.Env = append(os.Environ(), childEnv+"=1")
		agentLog := &lockedBuffer{}
		cmd.Stdout, cmd.Stderr = agentLog, agentLog
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		agentProcs = append(agentProcs, cmd)
		t.Cleanup(func() {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			done := make(chan struct{})
			go func() { _ = cmd.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				_ = cmd.Process.Kill()
				<-done
			}
			if t.Failed() {
				t.Logf("agent %d:\n%s", i, agentLog.String())
			}
		})
	}
	waitUntil := func(d time.Duration, what string, cond func() (bool, string)) {
		t.Helper()
		deadline := time.Now().Add(d)
		last := ""
		for time.Now().Before(deadline) {
			ok, s := cond()
			if ok {
				return
			}
			last = s
			time.Sleep(50 * time.Millisecond)
		}
		t.Fatalf("timed out after %v waiting for %s (last: %s)", d, what, last)
	}
	waitUntil(60*time.Second, "the agents to join", func() (bool, string) {
		var nodes struct {
			Value []struct {
				State string `json:"state"`
			} `json:"value"`
		}
		r, err := viaLB.do("GET", batchURL("hamain", "/pools/p1/nodes"), batchScope, "")
		if err != nil || r.status != 200 {
			return false, fmt.Sprint(r.status, err)
		}
		r.decode(t, &nodes)
		idle := 0
		for _, n := range nodes.Value {
			if n.State == "idle" {
				idle++
			}
		}
		return idle == agents, string(r.body)
	})

	// The job: a few hundred short tasks.
	runs := newRunServer(t)
	seed.must("POST", batchURL("hamain", "/jobs"), batchScope, `{"id":"j1","poolInfo":{"poolId":"p1"}}`, 201)
	for from := 0; from < tasks; from += 100 {
		var ts []string
		for i := from; i < min(from+100, tasks); i++ {
			ts = append(ts, fmt.Sprintf(`{"id":"t%03d","commandLine":%q}`, i, runs.commandLine()))
		}
		seed.must("POST", batchURL("hamain", "/jobs/j1/addtaskcollection"), batchScope, `{"value":[`+strings.Join(ts, ",")+`]}`, 200)
	}

	// An API call through the load balancer every 50 ms, for the whole
	// run: the longest run of failures is the longest outage a client saw.
	type outcome struct {
		began, at time.Time
		ok        bool
	}
	var (
		callsMu sync.Mutex
		calls   []outcome
	)
	pollCtx, stopPolling := context.WithCancel(context.Background())
	polled := make(chan struct{})
	go func() {
		defer close(polled)
		for pollCtx.Err() == nil {
			began := time.Now()
			r, err := viaLB.do("GET", batchURL("hamain", "/jobs/j1"), batchScope, "")
			callsMu.Lock()
			calls = append(calls, outcome{began, time.Now(), err == nil && r.status == 200})
			callsMu.Unlock()
			select {
			case <-pollCtx.Done():
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	defer func() { stopPolling(); <-polled }()
	firstOKAfter := func(t0 time.Time) time.Time {
		callsMu.Lock()
		defer callsMu.Unlock()
		for _, c := range calls {
			if c.at.After(t0) && c.ok {
				return c.at
			}
		}
		return time.Time{}
	}

	active := func() int {
		for i, r := range rs {
			if r.cmd.ProcessState == nil && r.role() == "active" {
				return i
			}
		}
		return -1
	}
	rounds := []string{"SIGKILL", "SIGKILL", "partition", "freeze"}
	for round := 1; round <= len(rounds); round++ {
		how := rounds[round-1]
		waitUntil(120*time.Second, fmt.Sprintf("%d tasks to end before round %d", round*tasks/5, round), func() (bool, string) {
			n := runs.ended()
			return n >= round*tasks/5, fmt.Sprint(n, " ended")
		})
		if round > 2 {
			// The replicas that ended come back, as standbys (a
			// supervisor restarts them where they were).
			for i, r := range rs {
				if r.cmd.ProcessState != nil {
					rs[i] = startReplicaAt(t, dir, dsn, r.addr)
					if role := rs[i].role(); role != "standby" {
						t.Fatalf("the restarted replica %d is %q, want standby", i, role)
					}
				}
			}
		}
		victim := active()
		if victim < 0 {
			t.Fatalf("round %d: no replica is active", round)
		}
		if round == 2 {
			// Revoke the identity's access to the key just before the
			// kill: the account must still lock, through the new active.
			arm(viaLB, "PUT", sub+"/providers/Microsoft.KeyVault/vaults/hakv/accessPolicies/remove", "2024-11-01",
				`{"properties":{"accessPolicies":[`+policy(revokePrincipal, "get", "wrapKey", "unwrapKey")+`]}}`, 200)
		}
		var exited chan time.Time
		if how == "SIGKILL" {
			rs[victim].kill()
		} else {
			// Cut the active's lease session, as a partition from the
			// database (or a database failover) does. The replica keeps
			// running, and must stop by itself; or it is frozen first
			// (a stalled machine), and must stop once it thaws, having
			// changed nothing.
			exited = make(chan time.Time, 1)
			go func() { _ = rs[victim].cmd.Wait(); exited <- time.Now() }()
			if how == "freeze" {
				if err := rs[victim].cmd.Process.Signal(syscall.SIGSTOP); err != nil {
					t.Fatal(err)
				}
			}
			db, err := sql.Open("pgx", dsn)
			if err != nil {
				t.Fatal(err)
			}
			var n int
			err = db.QueryRow(`SELECT count(pg_terminate_backend(pid)) FROM pg_locks
				WHERE locktype = 'advisory' AND granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
				AND pid IN (SELECT pid FROM pg_stat_activity WHERE wait_event_type IS DISTINCT FROM 'Lock')`).Scan(&n)
			db.Close()
			if err != nil || n != 1 {
				t.Fatalf("cut the active's lease session: %d sessions, %v", n, err)
			}
		}
		killed := time.Now()
		// The new active: the first survivor to say so.
		var tookOver time.Time
		newActive := -1
		// A partitioned active stops on its own: it stops scheduling and
		// node traffic, says it is no longer active and shuts down.
		var stopped time.Time
		waitUntil(30*time.Second, "a survivor to become active", func() (bool, string) {
			if how == "partition" && stopped.IsZero() && rs[victim].role() != "active" {
				stopped = time.Now()
			}
			for i, r := range rs {
				if i != victim && r.cmd.ProcessState == nil && r.role() == "active" {
					tookOver, newActive = time.Now(), i
					return true, ""
				}
			}
			return false, ""
		})
		waitUntil(30*time.Second, "an API call to succeed", func() (bool, string) { return !firstOKAfter(killed).IsZero(), "" })
		// Runs the killed active delivered start within moments of the
		// delivery; any run that begins after the new active took over
		// (3.5 s after the kill at the least) is one the new active started.
		waitUntil(30*time.Second, "the new active to start a task", func() (bool, string) { return !runs.firstStartAfter(tookOver).IsZero(), "" })
		t.Logf("round %d: %s of the active (replica %d) to: replica %d active %v, first successful API call %v, first task started by the new active %v",
			round, how, victim, newActive, tookOver.Sub(killed).Round(time.Millisecond), firstOKAfter(killed).Sub(killed).Round(time.Millisecond),
			runs.firstStartAfter(tookOver).Sub(killed).Round(time.Millisecond))
		if how == "freeze" {
			// It thaws once the new active runs tasks.
			time.Sleep(2 * time.Second)
			thawed := time.Now()
			if err := rs[victim].cmd.Process.Signal(syscall.SIGCONT); err != nil {
				t.Fatal(err)
			}
			select {
			case at := <-exited:
				t.Logf("round %d: the frozen active ended %v after it thawed; %d of its task writes were refused by the fence",
					round, at.Sub(thawed).Round(time.Millisecond), strings.Count(rs[victim].log.String(), "ReplicaNotActive"))
			case <-time.After(10 * time.Second):
				t.Fatalf("the frozen active is still running 10 s after it thawed")
			}
			if log := rs[victim].log.String(); !strings.Contains(log, "lost the active replica's lease") {
				t.Errorf("the frozen active's output does not say it lost its lease:\n%s", log)
			}
		}
		if how == "partition" {
			select {
			case at := <-exited:
				t.Logf("round %d: the partitioned active stopped %v after its session was cut, %v before the new active took over; its process ended %v after the cut",
					round, stopped.Sub(killed).Round(time.Millisecond), tookOver.Sub(stopped).Round(time.Millisecond), at.Sub(killed).Round(time.Millisecond))
				if stopped.IsZero() || !stopped.Before(tookOver) {
					t.Errorf("the partitioned active still said it was active when the new active took over; want it stopped before")
				}
				if log := rs[victim].log.String(); !strings.Contains(log, "lost the active replica's lease") {
					t.Errorf("the partitioned active's output does not say it lost its lease:\n%s", log)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("the partitioned active is still running 10 s after its lease session was cut")
			}
		}

		if round == 2 {
			// The revoked account locks within one probe interval of the
			// new active taking over (the probe itself aside).
			var locked time.Duration
			waitUntil(probeEvery+10*time.Second, "the revoked account to lock", func() (bool, string) {
				var a account
				r, err := viaLB.do("GET", haURL("management", revokeAcct+"?api-version=2024-07-01"), armScope, "")
				if err != nil || r.status != 200 {
					return false, fmt.Sprint(r.status, err)
				}
				r.decode(t, &a)
				if a.Properties.EncryptionStatus.State == "KeyInaccessible" {
					locked = time.Since(tookOver)
					return true, ""
				}
				return false, a.Properties.EncryptionStatus.State
			})
			t.Logf("round %d: the account whose key access was revoked before the kill locked %v after the new active took over", round, locked.Round(time.Millisecond))
			if locked > probeEvery+2*time.Second {
				t.Errorf("the revoked account locked %v after the new active took over; want within the key probe interval (%v) and the probe", locked, probeEvery)
			}
			if r, err := viaLB.do("POST", batchURL("harevoke", "/jobs"), batchScope, `{"id":"refused","poolInfo":{"poolId":"p1"}}`); err != nil ||
				r.status != http.StatusConflict || !strings.Contains(string(r.body), "AccountKeyInaccessible") {
				t.Errorf("a job added to the locked account: %d %s %v; want 409 AccountKeyInaccessible", r.status, r.body, err)
			}
		}
	}

	// Every task completes.
	waitUntil(180*time.Second, "every task to complete", func() (bool, string) {
		r, err := viaLB.do("GET", batchURL("hamain", "/jobs/j1/taskcounts"), batchScope, "")
		if err != nil || r.status != 200 {
			return false, fmt.Sprint(r.status, err)
		}
		var c struct {
			TaskCounts struct {
				Completed int `json:"completed"`
				Succeeded int `json:"succeeded"`
			} `json:"taskCounts"`
		}
		r.decode(t, &c)
		return c.TaskCounts.Completed == tasks, string(r.body)
	})
	stopPolling()
	<-polled

	var list struct {
		Value []struct {
			ID            string `json:"id"`
			State         string `json:"state"`
			ExecutionInfo struct {
				Result       string `json:"result"`
				ExitCode     *int   `json:"exitCode"`
				RequeueCount int    `json:"requeueCount"`
				RetryCount   int    `json:"retryCount"`
			} `json:"executionInfo"`
		} `json:"value"`
	}
	viaLB.must("GET", batchURL("hamain", "/jobs/j1/tasks?maxresults=1000"), batchScope, "", 200).decode(t, &list)
	if len(list.Value) != tasks {
		t.Fatalf("%d tasks listed, want %d", len(list.Value), tasks)
	}
	requeued := 0
	for _, tk := range list.Value {
		ei := tk.ExecutionInfo
		if tk.State != "completed" || ei.Result != "success" || ei.ExitCode == nil || *ei.ExitCode != 0 || ei.RetryCount != 0 {
			t.Errorf("task %s: %s %+v", tk.ID, tk.State, ei)
		}
		requeued += ei.RequeueCount
	}
	// Counted from the tasks' own calls: each ran to its end once, and no
	// two runs of a task were ever alive at once.
	runs.mu.Lock()
	var twice, overlapping, cut []string
	for i := 0; i < tasks; i++ {
		id := fmt.Sprintf("t%03d", i)
		tr := runs.tasks[id]
		switch {
		case tr == nil:
			twice = append(twice, id+" never ran")
		case tr.ends != 1:
			twice = append(twice, fmt.Sprintf("%s ran to its end %d times", id, tr.ends))
		}
		if tr != nil && tr.overlap {
			overlapping = append(overlapping, id)
		}
		if tr != nil && tr.cut > 0 {
			cut = append(cut, id)
		}
	}
	runs.mu.Unlock()
	sort.Strings(twice)
	if len(twice) > 0 {
		t.Errorf("tasks not completed exactly once: %v", twice)
	}
	if len(overlapping) > 0 {
		t.Errorf("tasks with two runs alive at once: %v", overlapping)
	}
	// The longest outage an API client saw.
	var longest time.Duration
	var failedSince time.Time
	callsMu.Lock()
	for _, c := range calls {
		switch {
		case !c.ok && failedSince.IsZero():
			failedSince = c.began
		case c.ok && !failedSince.IsZero():
			longest = max(longest, c.at.Sub(failedSince))
			failedSince = time.Time{}
		}
	}
	n := len(calls)
	callsMu.Unlock()
	t.Logf("%d tasks completed once each (%d requeued before they reached an agent, %d runs cut short); %d API calls, the longest outage %v",
		tasks, requeued, len(cut), n, longest.Round(time.Millisecond))
	if longest > haFailoverWindow || !failedSince.IsZero() {
		t.Errorf("API calls failed for %v (still failing at the end: %v); want at most the failover window %v", longest, !failedSince.IsZero(), haFailoverWindow)
	}
}

// lockedBuffer is a bytes buffer safe for a process's two output streams.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
