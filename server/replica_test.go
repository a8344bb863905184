package server_test

import (
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"

	"custody"
	"custody/batch"
	"custody/compute"
	"custody/rm"
	"custody/server"
	"custody/server/servertest"
	"custody/sqlstore"
	"custody/sqlstore/sqlstoretest"
)

// postgresDatabase creates a database of its own on the test PostgreSQL
// server (CUSTODY_TEST_POSTGRES) for the test and drops it afterwards; it
// skips when PostgreSQL is unreachable, unless CI is set.
func postgresDatabase(t *testing.T) string {
	t.Helper()
	return sqlstoretest.NewDatabase(t, "custody_replica_")
}

// token gets an access token from ts with the client-credentials grant.
func token(t *testing.T, ts *servertest.TestServer, clientID, secret, scope string) string {
	t.Helper()
	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {clientID}, "client_secret": {secret}, "scope": {scope}}
	resp, err := ts.Client.PostForm(ts.URL("login")+"/"+ts.Admin.TenantID+"/oauth2/v2.0/token", form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var v struct {
		AccessToken string `json:"access_token"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal(b, &v) != nil || v.AccessToken == "" {
		t.Fatalf("token: %d %s", resp.StatusCode, b)
	}
	return v.AccessToken
}

// call sends a request with a bearer token and returns the status and body.
func call(t *testing.T, ts *servertest.TestServer, method, u, tok, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := ts.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func claim(t *testing.T, jwt, name string) string {
	t.Helper()
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %q", jwt)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	s, _ := m[name].(string)
	return s
}

// replicaConfig is the configuration of a replica on the shared database
// and data directory with the cluster's public URL.
func replicaConfig(dsn, dataDir, publicURL string) func(*server.Config) {
	return func(c *server.Config) {
		c.Database, c.DataDir, c.PublicURL, c.DisableLocalNodes = dsn, dataDir, publicURL, true
	}
}

// waitRole waits until ts has role.
func waitRole(t *testing.T, ts *servertest.TestServer, role string, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for ts.Role() != role {
		if time.Since(start) > within {
			t.Fatalf("replica %s is %s, not %s, after %v", ts.Endpoint.Address, ts.Role(), role, within)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return time.Since(start)
}

// health reads /healthz of ts (with query, if any).
func health(t *testing.T, ts *servertest.TestServer, query string) (int, string) {
	t.Helper()
	return call(t, ts, http.MethodGet, ts.URL("management")+"/healthz"+query, "", "")
}

// TestReplicasOneIdentityOneActive: two replicas on one PostgreSQL
// database and data directory, listening on ports of their own, hand out
// the public URL's names and port. The first is active; the second is a
// standby that forwards requests to it (503 with a Retry-After when it
// cannot); when the first stops, the second takes over and accepts the
// tokens the first issued.
func TestReplicasOneIdentityOneActive(t *testing.T) {
	dsn := postgresDatabase(t)
	dir := t.TempDir()
	const public = "https://custody.example:8443"
	a := servertest.New(t, replicaConfig(dsn, dir, public))
	b := servertest.NewReplica(t, replicaConfig(dsn, dir, public))
	if a.Port() != 8443 || b.Port() != 8443 || a.Endpoint.Domain != "custody.example" || a.Endpoint.Address == b.Endpoint.Address {
		t.Fatalf("endpoints %+v and %+v; want port 8443 and domain custody.example on two listeners", a.Endpoint, b.Endpoint)
	}
	if a.Identity.TenantID != b.Identity.TenantID || a.Admin != b.Admin {
		t.Fatalf("replicas differ in tenant or admin: %+v, %+v", a.Admin, b.Admin)
	}
	// The URLs the services build carry the public name and port.
	for _, got := range []string{a.KeyVault.VaultURI("kv1"), b.Batch.AccountEndpoint("acct1")} {
		if !strings.Contains(got, ".custody.example:8443") {
			t.Errorf("service URL %q does not carry the public URL's domain and port", got)
		}
	}

	tok := token(t, a, a.Admin.ClientID, a.Admin.ClientSecret, "https://management.custody.example:8443/.default")
	if iss, want := claim(t, tok, "iss"), "https://login.custody.example:8443/"+a.Identity.TenantID+"/v2.0"; iss != want {
		t.Errorf("iss = %q, want %q", iss, want)
	}
	rg := "https://management.custody.example:8443/subscriptions/" + a.Admin.SubscriptionID + "/resourcegroups/replicated?api-version=2021-04-01"
	if st, body := call(t, a, http.MethodPut, rg, tok, `{"location":"westus2"}`); st != http.StatusCreated && st != http.StatusOK {
		t.Fatalf("create group on the active: %d %s", st, body)
	}

	// The standby: /healthz says so; it forwards every other request to
	// the active, the caller's token with it.
	time.Sleep(300 * time.Millisecond)
	if b.Role() != server.RoleStandby {
		t.Fatalf("second replica's role = %q, want standby", b.Role())
	}
	if st, body := health(t, b, ""); st != http.StatusOK || !strings.Contains(body, `"role":"standby"`) {
		t.Errorf("standby /healthz = %d %s", st, body)
	}
	if st, body := health(t, b, "?active"); st != http.StatusServiceUnavailable {
		t.Errorf("standby /healthz?active = %d %s, want 503", st, body)
	}
	if st, body := health(t, a, "?active"); st != http.StatusOK || !strings.Contains(body, `"role":"active"`) {
		t.Errorf("active /healthz?active = %d %s", st, body)
	}
	viaB := token(t, b, a.Admin.ClientID, a.Admin.ClientSecret, "https://management.custody.example:8443/.default")
	rg2 := strings.Replace(rg, "/replicated?", "/throughstandby?", 1)
	if st, body := call(t, b, http.MethodPut, rg2, viaB, `{"location":"westus2"}`); st != http.StatusCreated {
		t.Fatalf("create group through the standby: %d %s", st, body)
	}
	if st, body := call(t, a, http.MethodGet, rg2, tok, ""); st != http.StatusOK {
		t.Fatalf("the group created through the standby, on the active: %d %s", st, body)
	}
	if st, body := call(t, b, http.MethodGet, rg2, "", ""); st != http.StatusUnauthorized {
		t.Errorf("through the standby without a token: %d %s, want 401 from the active", st, body)
	}

	// A request forwarded once is never forwarded again; a standby that
	// cannot reach the active answers 503 in Azure's shape with a
	// Retry-After.
	standby503 := func(when string, header bool) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, rg, nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		if header {
			req.Header.Set("X-Custody-Forwarded", "elsewhere:1")
		}
		resp, err := b.Client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || !strings.Contains(string(body), `"code":"ServiceUnavailable"`) {
			t.Errorf("%s: standby answered %d (Retry-After %q) %s; want 503 ServiceUnavailable with a Retry-After", when, resp.StatusCode, resp.Header.Get("Retry-After"), body)
		}
	}
	standby503("a request forwarded already", true)
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var was string
	if err := db.QueryRow(`SELECT value FROM settings WHERE key = 'server.active_lease'`).Scan(&was); err != nil || !strings.Contains(was, a.Endpoint.Address) {
		t.Fatalf("lease record %q, %v; want the active's address %s", was, err, a.Endpoint.Address)
	}
	if _, err := db.Exec(`UPDATE settings SET value = '{"address":"127.0.0.1:1"}' WHERE key = 'server.active_lease'`); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond)
	standby503("the active unreachable", false)
	if _, err := db.Exec(`UPDATE settings SET value = $1 WHERE key = 'server.active_lease'`, was); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // the failed forward makes the next one read it again
	if st, body := call(t, b, http.MethodGet, rg, tok, ""); st != http.StatusOK {
		t.Errorf("through the standby once the active is known again: %d %s", st, body)
	}

	// Failover: the active stops, the standby takes over and accepts the
	// first one's token.
	if err := a.Stop(); err != nil {
		t.Fatal(err)
	}
	took := waitRole(t, b, "active", 10*time.Second)
	t.Logf("the standby became active %v after the active stopped", took)
	if st, body := call(t, b, http.MethodGet, rg, tok, ""); st != http.StatusOK || !strings.Contains(body, `"replicated"`) {
		t.Fatalf("the former active's token on the new active: %d %s", st, body)
	}
	var ep server.Endpoint
	if b, err := os.ReadFile(dir + "/" + server.EndpointFile); err != nil || json.Unmarshal(b, &ep) != nil || ep.Port != 8443 {
		t.Errorf("server.json = %s (%v); want the public port", b, err)
	}
}

// TestLeaseLostStopsActive: when the active's lease session is cut (as a
// partition or a database failover does), it steps down within a heartbeat:
// it stops what only the active runs, stops answering, and Serve returns
// ErrLeaseLost; the standby, which cannot know the former active has
// stopped, takes over only after it must have.
func TestLeaseLostStopsActive(t *testing.T) {
	dsn := postgresDatabase(t)
	dir := t.TempDir()
	const public = "https://localhost:8443"
	a := servertest.New(t, replicaConfig(dsn, dir, public))
	b := servertest.NewReplica(t, replicaConfig(dsn, dir, public))
	time.Sleep(200 * time.Millisecond)
	if b.Role() != server.RoleStandby {
		t.Fatalf("second replica's role = %q, want standby", b.Role())
	}

	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow(`SELECT count(pg_terminate_backend(pid)) FROM pg_locks
		WHERE locktype = 'advisory' AND granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
		AND pid IN (SELECT pid FROM pg_stat_activity WHERE wait_event_type IS DISTINCT FROM 'Lock')`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("cut the active's lease session: %d sessions, %v", n, err)
	}
	cut := time.Now()
	var down, up time.Duration
	for down == 0 || up == 0 {
		if time.Since(cut) > 15*time.Second {
			t.Fatalf("after 15 s: former active %s, standby %s", a.Role(), b.Role())
		}
		if down == 0 && a.Role() != "active" {
			down = time.Since(cut)
		}
		if up == 0 && b.Role() == "active" {
			up = time.Since(cut)
		}
		time.Sleep(2 * time.Millisecond)
	}
	t.Logf("after the session was cut, the former active stepped down in %v, the standby became active in %v", down, up)
	if up <= down {
		t.Errorf("the standby became active (%v) before the former active stepped down (%v)", up, down)
	}
	// It no longer answers: Serve shut it down.
	if _, err := a.Client.Get(a.URL("management") + "/healthz"); err == nil {
		t.Errorf("the former active still answers after losing its lease")
	}
	if err := a.Stop(); !errors.Is(err, server.ErrLeaseLost) {
		t.Errorf("the former active's Serve returned %v, want ErrLeaseLost", err)
	}
	tok := token(t, b, b.Admin.ClientID, b.Admin.ClientSecret, "https://management.localhost:8443/.default")
	if st, body := call(t, b, http.MethodGet, "https://management.localhost:8443/subscriptions/"+b.Admin.SubscriptionID+"/resourcegroups?api-version=2021-04-01", tok, ""); st != http.StatusOK {
		t.Errorf("new active: %d %s", st, body)
	}
}

// TestSinglePostgresServerIsActive: one server on PostgreSQL is the active
// replica at once and says so.
func TestSinglePostgresServerIsActive(t *testing.T) {
	ts := servertest.New(t, func(c *server.Config) { c.Database, c.DisableLocalNodes = postgresDatabase(t), true })
	if st, body := health(t, ts, "?active"); st != http.StatusOK || !strings.Contains(body, `"role":"active"`) {
		t.Errorf("/healthz?active = %d %s", st, body)
	}
}

func TestParsePublicURL(t *testing.T) {
	for _, tc := range []struct {
		in     string
		domain string
		port   int
	}{
		{"https://custody.example:8443", "custody.example", 8443},
		{"https://Custody.Example", "custody.example", 443},
		{"https://localhost:8443/", "localhost", 8443},
	} {
		d, p, err := server.ParsePublicURL(tc.in)
		if err != nil || d != tc.domain || p != tc.port {
			t.Errorf("ParsePublicURL(%q) = %q, %d, %v; want %q, %d", tc.in, d, p, err, tc.domain, tc.port)
		}
	}
	for _, bad := range []string{"http://custody.example", "https://127.0.0.1:8443", "https://custody.example:0", "https://custody.example/x", "custody.example", "https://u@custody.example"} {
		if _, _, err := server.ParsePublicURL(bad); err == nil {
			t.Errorf("ParsePublicURL(%q) accepted", bad)
		}
	}
}

// TestFencedWritesOfFormerActive: a task write of the scheduler or the node
// channel is fenced by the lease epoch the active raised when it took the
// lease. Once the active's lease session is cut and the standby has taken
// over, a write the former active still sends (one it had under way when it
// was cut off, or makes before it notices) changes nothing and is refused
// with 503 ReplicaNotActive, so its agent sends the report again to the new
// active; the new active's writes land.
func TestFencedWritesOfFormerActive(t *testing.T) {
	dsn := postgresDatabase(t)
	dir := t.TempDir()
	const public = "https://localhost:8443"
	a := servertest.New(t, replicaConfig(dsn, dir, public))
	b := servertest.NewReplica(t, replicaConfig(dsn, dir, public))
	ctx := context.Background()
	store := &sqlstore.BatchDataStore{DB: a.DB}
	now := time.Now().UTC()
	if err := store.CreateJob(ctx, "acct", &batch.JobRecord{JobMeta: batch.JobMeta{ID: "j", PoolID: "p", State: batch.JobActive, ETag: "0x1",
		CreationTime: now, LastModified: now, StateTransitionTime: now}, Sealed: []byte{1}}); err != nil {
		t.Fatal(err)
	}
	var recs []*batch.TaskRecord
	for _, id := range []string{"before", "after"} {
		r := &batch.TaskRecord{TaskMeta: batch.TaskMeta{JobID: "j", ID: id, State: batch.TaskRunning, ETag: "0x1"}, Sealed: []byte{1}}
		r.Outcome.NodeID = "n1"
		recs = append(recs, r)
	}
	if _, err := store.CreateTasks(ctx, "acct", recs); err != nil {
		t.Fatal(err)
	}
	finish := func(ts *servertest.TestServer, task string) error {
		return ts.Tasks().FinishTask(ctx, "acct", "j", task, compute.RunResult{NodeID: "n1", EndTime: time.Now(), Outcome: compute.OutcomeSucceeded})
	}
	state := func(task string) string {
		r, err := store.Task(ctx, "acct", "j", task)
		if err != nil {
			t.Fatal(err)
		}
		return r.State
	}
	if err := finish(a, "before"); err != nil || state("before") != batch.TaskCompleted {
		t.Fatalf("the active's write: %v, task %s", err, state("before"))
	}
	if err := finish(b, "after"); custody.ErrorCode(err) != "ReplicaNotActive" || state("after") != batch.TaskRunning {
		t.Fatalf("a standby's write: %v, task %s; want ReplicaNotActive, running", err, state("after"))
	}

	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`SELECT pg_terminate_backend(pid) FROM pg_locks
		WHERE locktype = 'advisory' AND granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
		AND pid IN (SELECT pid FROM pg_stat_activity WHERE wait_event_type IS DISTINCT FROM 'Lock')`); err != nil {
		t.Fatal(err)
	}
	waitRole(t, b, "active", 15*time.Second)
	err = finish(a, "after")
	if custody.ErrorKind(err) != custody.KindUnavailable || custody.ErrorCode(err) != "ReplicaNotActive" {
		t.Errorf("the former active's write after the takeover: %v, want 503 ReplicaNotActive", err)
	}
	// The same through the batch write the node channel uses.
	err = a.Tasks().FinishTasks(ctx, "acct", []compute.TaskEnd{{JobID: "j", TaskID: "after",
		Result: compute.RunResult{NodeID: "n1", EndTime: time.Now(), Outcome: compute.OutcomeSucceeded}}})
	if custody.ErrorKind(err) != custody.KindUnavailable || custody.ErrorCode(err) != "ReplicaNotActive" {
		t.Errorf("the former active's batch write after the takeover: %v, want 503 ReplicaNotActive", err)
	}
	if st := state("after"); st != batch.TaskRunning {
		t.Errorf("the task after the former active's write: %s, want it unchanged (running)", st)
	}
	if err := finish(b, "after"); err != nil || state("after") != batch.TaskCompleted {
		t.Errorf("the new active's write: %v, task %s", err, state("after"))
	}
}

// TestLocalNodesOnlyOnActive: with local nodes on, only the active replica
// starts a pool's local nodes; a standby starts none. When the active loses
// its lease, its local nodes are stopped before the standby takes over and
// starts the pool's nodes itself. (The node command here records each start
// and waits; the agents themselves are tested in compat.)
func TestLocalNodesOnlyOnActive(t *testing.T) {
	dsn := postgresDatabase(t)
	dir := t.TempDir()
	const public = "https://localhost:8443"
	starts := t.TempDir() + "/starts"
	cfg := func(c *server.Config) {
		replicaConfig(dsn, dir, public)(c)
		c.DisableLocalNodes = false
		c.UnsafeSharedHostNodes = true
		c.NodeRoot = t.TempDir()
		c.NodeCommand = []string{"/bin/sh", "-c", `echo $$ >> "$0"; exec sleep 600`, starts}
	}
	a := servertest.New(t, cfg)
	b := servertest.NewReplica(t, cfg)
	ctx := context.Background()
	if _, err := a.RM.PutResourceGroup(ctx, &rm.ResourceGroup{SubscriptionID: a.RM.SubscriptionID, Name: "rg1", Location: "westus2"}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Batch.CreateAccount(ctx, &batch.Account{ID: rm.ResourceID(a.RM.SubscriptionID, "rg1", "Microsoft.Batch", "batchAccounts", "acct"),
		SubscriptionID: a.RM.SubscriptionID, ResourceGroup: "rg1", Name: "acct", Location: "westus2"}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Compute.CreatePool(ctx, "acct", &compute.Pool{ID: "p1", VMSize: "standard_d2s_v3", TargetDedicated: 2}); err != nil {
		t.Fatal(err)
	}
	pids := func() []int {
		b, _ := os.ReadFile(starts)
		var out []int
		for _, f := range strings.Fields(string(b)) {
			if n, err := strconv.Atoi(f); err == nil {
				out = append(out, n)
			}
		}
		return out
	}
	alive := func(pid int) bool { return syscall.Kill(pid, 0) == nil }
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s (nodes started: %v)", what, pids())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitFor("the active to start the pool's two local nodes", func() bool { return len(pids()) == 2 })
	time.Sleep(time.Second)
	if n := len(pids()); n != 2 || len(a.Compute.NodeStates("acct", "p1")) != 2 || len(b.Compute.NodeStates("acct", "p1")) != 0 {
		t.Fatalf("%d local nodes started; the active knows %v, the standby %v; want 2, 2 and none",
			n, a.Compute.NodeStates("acct", "p1"), b.Compute.NodeStates("acct", "p1"))
	}
	first := pids()

	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`SELECT pg_terminate_backend(pid) FROM pg_locks
		WHERE locktype = 'advisory' AND granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
		AND pid IN (SELECT pid FROM pg_stat_activity WHERE wait_event_type IS DISTINCT FROM 'Lock')`); err != nil {
		t.Fatal(err)
	}
	waitRole(t, b, "active", 15*time.Second)
	for _, pid := range first {
		if alive(pid) {
			t.Errorf("the former active's local node %d is still running when the standby took over", pid)
		}
	}
	waitFor("the new active to start the pool's nodes", func() bool { return len(pids()) == 4 })
	for _, pid := range pids()[2:] {
		if !alive(pid) {
			t.Errorf("the new active's local node %d is not running", pid)
		}
	}
	if n := len(b.Compute.NodeStates("acct", "p1")); n != 2 {
		t.Errorf("the new active knows %d nodes of the pool, want 2", n)
	}
}
