package crashtest_test

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"

	"custody/server"
	"custody/sqlstore/sqlstoretest"
)

// failoverPublicURL is the cluster's one address; clients dial each
// replica's listener for its names.
const (
	failoverPublicURL = "https://localhost:8443"
	failoverPublic    = "localhost:8443"
)

// replicaProc is one `custody server` process of a cluster.
type replicaProc struct {
	addr   string
	cmd    *exec.Cmd
	log    *bytes.Buffer
	client *http.Client
}

// failoverDatabase creates a database of the test's own on the test
// PostgreSQL server and drops it afterwards; it skips when PostgreSQL is
// unreachable, unless CI is set.
func failoverDatabase(t *testing.T) string {
	t.Helper()
	return sqlstoretest.NewDatabase(t, "custody_failover_")
}

func startReplica(t *testing.T, dir, dsn string) *replicaProc {
	t.Helper()
	return startReplicaAt(t, dir, dsn, fmt.Sprintf("127.0.0.1:%d", freePort(t)))
}

// startReplicaAt starts a replica listening on addr (a supervisor restarts
// one where it was).
func startReplicaAt(t *testing.T, dir, dsn, addr string) *replicaProc {
	t.Helper()
	p := &replicaProc{addr: addr, log: &bytes.Buffer{}}
	p.cmd = exec.Command(os.Args[0], "server", "--data-dir", dir, "--database", dsn, "--listen", p.addr,
		"--public-url", failoverPublicURL, "--disable-local-nodes", "--log-level", "warn")
	p.cmd.Env = append(os.Environ(), childEnv+"=1")
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.kill() })
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if p.client == nil {
			if pemBytes, err := os.ReadFile(filepath.Join(dir, "ca.pem")); err == nil {
				pool := x509.NewCertPool()
				pool.AppendCertsFromPEM(pemBytes)
				p.client = &http.Client{Transport: server.Transport(pool, "localhost", p.addr), Timeout: 20 * time.Second}
			}
		}
		if p.client != nil && p.role() != "" {
			return p
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("replica %s did not start:\n%s", p.addr, p.log)
	return nil
}

// role is what the replica's /healthz says ("" when it does not answer).
func (p *replicaProc) role() string {
	resp, err := p.client.Get("https://management." + failoverPublic + "/healthz")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	var h struct {
		Role string `json:"role"`
	}
	if json.NewDecoder(resp.Body).Decode(&h) != nil {
		return ""
	}
	return h.Role
}

func (p *replicaProc) kill() {
	if p.cmd.ProcessState == nil {
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		_ = p.cmd.Wait()
	}
	if p.client != nil {
		p.client.CloseIdleConnections()
	}
}

// do sends a request through the replica; tok may be empty.
func (p *replicaProc) do(method, u, tok, body string) (int, string, error) {
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), nil
}

// TestFailoverSIGKILL runs three `custody server` processes on one
// PostgreSQL database and data directory, with one public URL. Requests
// sent to any replica are served (standbys forward them to the active).
// The active is killed with SIGKILL, twice in a row: each time a standby
// takes over, and the time from the kill to the first successful API call
// through a surviving replica is reported (the target: under 10 s).
func TestFailoverSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three server processes")
	}
	dsn := failoverDatabase(t)
	dir := t.TempDir()
	// The first replica alone creates the data directory's secrets and
	// bootstraps the database.
	rs := []*replicaProc{startReplica(t, dir, dsn)}
	for rs[0].role() != "active" {
		time.Sleep(20 * time.Millisecond)
	}
	rs = append(rs, startReplica(t, dir, dsn), startReplica(t, dir, dsn))
	for i, r := range rs[1:] {
		if role := r.role(); role != "standby" {
			t.Fatalf("replica %d is %q, want standby", i+1, role)
		}
	}
	var admin server.AdminCredentials
	b, err := os.ReadFile(filepath.Join(dir, server.AdminFile))
	if err != nil || json.Unmarshal(b, &admin) != nil {
		t.Fatalf("admin credentials: %v", err)
	}

	token := func(r *replicaProc) (string, error) {
		form := url.Values{"grant_type": {"client_credentials"}, "client_id": {admin.ClientID}, "client_secret": {admin.ClientSecret},
			"scope": {"https://management." + failoverPublic + "/.default"}}
		resp, err := r.client.PostForm("https://login."+failoverPublic+"/"+admin.TenantID+"/oauth2/v2.0/token", form)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		var v struct {
			AccessToken string `json:"access_token"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&v); err != nil || v.AccessToken == "" {
			return "", fmt.Errorf("token: %d %v", resp.StatusCode, err)
		}
		return v.AccessToken, nil
	}
	groups := "https://management." + failoverPublic + "/subscriptions/" + admin.SubscriptionID + "/resourcegroups"
	// Through a standby: a token, and a group.
	tok, err := token(rs[1])
	if err != nil {
		t.Fatal(err)
	}
	if st, body, err := rs[2].do(http.MethodPut, groups+"/g0?api-version=2021-04-01", tok, `{"location":"westus2"}`); err != nil || st != http.StatusCreated {
		t.Fatalf("create a group through a standby: %d %s %v", st, body, err)
	}
	// Reads through each replica.
	for i, r := range rs {
		if st, body, err := r.do(http.MethodGet, groups+"/g0?api-version=2021-04-01", tok, ""); err != nil || st != http.StatusOK {
			t.Fatalf("read the group through replica %d: %d %s %v", i, st, body, err)
		}
	}

	active := 0
	for round := 1; round <= 2; round++ {
		rs[active].kill()
		killed := time.Now()
		var survivors []*replicaProc
		for _, r := range rs {
			if r.cmd.ProcessState == nil {
				survivors = append(survivors, r)
			}
		}
		// The first successful call through any surviving replica, with
		// the token the killed one's cluster issued.
		var firstOK time.Duration
		var attempts []string
		group := fmt.Sprintf("%s/g%d?api-version=2021-04-01", groups, round)
		for i := 0; firstOK == 0; i++ {
			if time.Since(killed) > 30*time.Second {
				t.Fatalf("round %d: no replica served a call within 30 s of the kill", round)
			}
			r := survivors[i%len(survivors)]
			start := time.Since(killed)
			st, body, err := r.do(http.MethodPut, group, tok, `{"location":"westus2"}`)
			if err == nil && st == http.StatusCreated {
				firstOK = time.Since(killed)
				break
			}
			if len(body) > 200 {
				body = body[:200]
			}
			attempts = append(attempts, fmt.Sprintf("%v..%v via %s: %d %s %v", start.Round(time.Millisecond), time.Since(killed).Round(time.Millisecond), r.addr, st, body, err))
			time.Sleep(20 * time.Millisecond)
		}
		active = -1
		for i, r := range rs {
			if r.cmd.ProcessState == nil && r.role() == "active" {
				active = i
			}
		}
		if active < 0 {
			t.Fatalf("round %d: a call succeeded but no replica says it is active", round)
		}
		t.Logf("round %d: SIGKILL of the active to the first successful API call through a surviving replica: %v (replica %d is active)", round, firstOK.Round(time.Millisecond), active)
		if firstOK > 10*time.Second {
			t.Errorf("round %d: failover took %v, over the 10 s target", round, firstOK)
			for _, a := range attempts {
				t.Logf("attempt %s", a)
			}
			for _, r := range survivors {
				t.Logf("replica %s:\n%s", r.addr, r.log)
			}
		}
		for i, r := range survivors {
			if st, body, err := r.do(http.MethodGet, group, tok, ""); err != nil || st != http.StatusOK {
				t.Errorf("round %d: read through survivor %d: %d %s %v", round, i, st, body, err)
			}
		}
	}
}
