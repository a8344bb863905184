package node

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestAgentKillsRunsWhenServerOutOfReach: an agent whose server stops
// answering kills its runs before the server would declare the node lost
// (three quarters of the lost timeout it was given at join), does not report
// them, and joins again once the server answers.
func TestAgentKillsRunsWhenServerOutOfReach(t *testing.T) {
	const lostAfter = 2 * time.Second
	pidFile := filepath.Join(t.TempDir(), "pid")
	var (
		mu      sync.Mutex
		down    bool
		joins   int
		sent    bool
		reports []RunReport
	)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if down {
			http.Error(w, "unavailable", http.StatusServiceUnavailable)
			return
		}
		var out any
		switch r.URL.Path {
		case "/node/v1/join":
			joins++
			out = JoinResponse{NodeID: "n1", PoolID: "p1", Account: "a", LostAfterMillis: lostAfter.Milliseconds()}
		case "/node/v1/sync":
			time.Sleep(20 * time.Millisecond)
			resp := SyncResponse{State: "idle"}
			if !sent {
				sent = true
				resp.Runs = []Run{{RunID: "j/t/1", Kind: "task", JobID: "j", TaskID: "t", CommandLine: "echo $$ > " + pidFile + "; exec sleep 30"}}
			}
			out = resp
		case "/node/v1/report":
			var rr ReportRequest
			_ = json.NewDecoder(r.Body).Decode(&rr)
			reports = append(reports, rr.Finished...)
			w.WriteHeader(http.StatusNoContent)
			return
		default:
			http.NotFound(w, r)
			return
		}
		_ = json.NewEncoder(w).Encode(out)
	}))
	defer srv.Close()
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	a, err := NewAgent(AgentConfig{Server: srv.URL, CAPool: pool, Credential: "c", Root: t.TempDir(), Runner: testRunner,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = a.Run(ctx)
	}()
	defer func() { cancel(); <-done }()

	wait := func(what string, d time.Duration, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(d)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	pid := 0
	wait("the run to start", 5*time.Second, func() bool {
		b, err := os.ReadFile(pidFile)
		pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		return err == nil && pid > 0
	})
	alive := func() bool { return syscall.Kill(pid, 0) == nil }

	mu.Lock()
	down = true
	mu.Unlock()
	off := time.Now()
	wait("the run to be killed", 3*time.Second, func() bool { return !alive() })
	if took := time.Since(off); took >= lostAfter {
		t.Errorf("the run was killed %s after the server stopped answering; the server declares the node lost after %s", took, lostAfter)
	}

	mu.Lock()
	down = false
	mu.Unlock()
	wait("the agent to join again", 5*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return joins == 2 })
	time.Sleep(200 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	if len(reports) != 0 {
		t.Errorf("the killed run was reported: %+v", reports)
	}
}
