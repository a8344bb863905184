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
		// The run reports its host pid through a file: this test is about the
		// agent's watchdog, not the sandbox (see compat/sandbox_test.go).
		UnsafeSharedHost: true,
		Logger:           slog.New(slog.NewTextHandler(io.Discard, nil))})
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

// TestFilesStayInServedDirectory: the file API resolves every path beneath
// the directory it serves (a task's directory for task files, the node
// root for node files): links that lead out are refused for reads and
// deletes, listings show links as files without following them, and
// certificate material is never served or listed.
func TestFilesStayInServedDirectory(t *testing.T) {
	root := filepath.Join(t.TempDir(), "node")
	outside := t.TempDir()
	mustWrite := func(p, s string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	mustLink := func(target, p string) {
		t.Helper()
		if err := os.Symlink(target, p); err != nil {
			t.Fatal(err)
		}
	}
	mustWrite(filepath.Join(outside, "secret"), "outside secret")
	mustWrite(filepath.Join(outside, "victim"), "keep me")
	task := filepath.Join(root, "workitems", "j", "job-1", "t")
	mustWrite(filepath.Join(task, "stdout.txt"), "task output")
	mustWrite(filepath.Join(task, "wd", "out.txt"), "in the working directory")
	mustWrite(filepath.Join(root, "workitems", "j", "job-1", "t2", "stdout.txt"), "other task output")
	mustLink(outside, filepath.Join(task, "wd", "etcdir")) // absolute, out of the root
	relOut, err := filepath.Rel(filepath.Join(task, "wd"), outside)
	if err != nil {
		t.Fatal(err)
	}
	mustLink(relOut, filepath.Join(task, "wd", "rel"))             // relative, out of the root
	mustLink("../stdout.txt", filepath.Join(task, "wd", "inner"))  // inside the task directory
	mustLink("../../t2", filepath.Join(task, "wd", "sibling"))     // inside the node root, out of the task
	mustLink("workitems/j/job-1/t", filepath.Join(root, "shared")) // a node file leading into a task: allowed

	a, err := NewAgent(AgentConfig{Server: "https://server.invalid", Credential: "c", Root: root,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if rel, _ := filepath.Rel(root, a.cfg.certificatesDir()); !strings.HasPrefix(rel, "..") {
		t.Errorf("the certificates directory %s is under the node root %s", a.cfg.certificatesDir(), root)
	}
	do := func(method, p, dir string, recursive bool) *httptest.ResponseRecorder {
		t.Helper()
		w := httptest.NewRecorder()
		a.serveFile(w, FileRequest{Method: method, Path: p, Dir: dir, Recursive: recursive})
		return w
	}
	const taskDir = "workitems/j/job-1/t"
	for _, c := range []struct {
		path, dir string
		status    int
		body      string
	}{
		{"wd/etcdir/secret", taskDir, http.StatusForbidden, ""},
		{"wd/etcdir", taskDir, http.StatusForbidden, ""},
		{"wd/rel/secret", taskDir, http.StatusForbidden, ""},
		{"wd/sibling/stdout.txt", taskDir, http.StatusForbidden, ""},
		{"wd/inner", taskDir, http.StatusOK, "task output"},
		{"stdout.txt", taskDir, http.StatusOK, "task output"},
		{"shared/stdout.txt", "", http.StatusOK, "task output"},
		{"workitems/j/job-1/t/wd/etcdir/secret", "", http.StatusForbidden, ""},
		{"stdout.txt", "workitems/j/job-1/t/wd/sibling", http.StatusForbidden, ""},
	} {
		w := do(http.MethodGet, c.path, c.dir, false)
		if w.Code != c.status || strings.Contains(w.Body.String(), "outside secret") || (c.body != "" && w.Body.String() != c.body) {
			t.Errorf("GET %s (dir %q) = %d %q, want %d %q", c.path, c.dir, w.Code, w.Body.String(), c.status, c.body)
		}
	}

	// Deletes through a link that leads out are refused; deleting the link
	// removes the link only.
	for _, p := range []string{"wd/etcdir/victim", "wd/rel/victim"} {
		if w := do(http.MethodDelete, p, taskDir, false); w.Code != http.StatusForbidden {
			t.Errorf("DELETE %s = %d, want 403", p, w.Code)
		}
	}
	if w := do(http.MethodDelete, "wd/etcdir", taskDir, true); w.Code != http.StatusNoContent {
		t.Errorf("DELETE wd/etcdir = %d, want 204", w.Code)
	}
	if _, err := os.Lstat(filepath.Join(task, "wd", "etcdir")); !os.IsNotExist(err) {
		t.Errorf("the link wd/etcdir is still there: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(outside, "victim")); err != nil || string(b) != "keep me" {
		t.Errorf("the file outside the node root is gone or changed: %q %v", b, err)
	}

	// Listings show links as files and never descend through them.
	w := do(http.MethodGet, "", taskDir, true)
	var l FileListing
	if err := json.Unmarshal(w.Body.Bytes(), &l); err != nil || w.Code != http.StatusOK {
		t.Fatalf("list %s = %d %q: %v", taskDir, w.Code, w.Body.String(), err)
	}
	got := map[string]bool{}
	for _, f := range l.Files {
		got[f.Name] = f.IsDirectory
	}
	want := map[string]bool{"stdout.txt": false, "wd": true, "wd/out.txt": false, "wd/rel": false, "wd/inner": false, "wd/sibling": false}
	if len(got) != len(want) {
		t.Errorf("recursive task listing = %v, want %v", got, want)
	}
	for name, isDir := range want {
		if d, ok := got[name]; !ok || d != isDir {
			t.Errorf("recursive task listing = %v, want %v", got, want)
			break
		}
	}

	// Certificates: installed outside the node root by default; and where
	// the directory is configured under it, still never served or listed.
	cert := Certificate{Thumbprint: "AB12", ThumbprintAlgorithm: "sha1", Format: "pfx", Data: "cGZ4LWJ5dGVz", Password: "pfx-password"}
	if err := a.installConfig(&Config{Generation: 1, Certificates: []Certificate{cert}}); err != nil {
		t.Fatal(err)
	}
	if w := do(http.MethodGet, "", "", true); strings.Contains(w.Body.String(), "sha1-ab12") {
		t.Errorf("the node listing shows the certificates: %s", w.Body.String())
	}
	a.cfg.CertificatesDir = filepath.Join(root, "certs")
	if err := a.installConfig(&Config{Generation: 2, Certificates: []Certificate{cert}}); err != nil {
		t.Fatal(err)
	}
	mustLink("../../../../../certs", filepath.Join(task, "wd", "certlink"))
	for _, c := range []struct{ path, dir string }{
		{"certs/sha1-ab12.pfx", ""}, {"certs/sha1-ab12.pw", ""}, {"certs", ""},
		{"shared/wd/certlink/sha1-ab12.pw", ""}, {"wd/certlink/sha1-ab12.pfx", taskDir}, {"wd/certlink", taskDir},
	} {
		w := do(http.MethodGet, c.path, c.dir, false)
		if w.Code != http.StatusForbidden || strings.Contains(w.Body.String(), "pfx-") {
			t.Errorf("GET %s (dir %q) = %d %q, want 403", c.path, c.dir, w.Code, w.Body.String())
		}
		if c.path == "wd/certlink" {
			continue // deleting the link itself is allowed
		}
		if w := do(http.MethodDelete, c.path, c.dir, true); w.Code != http.StatusForbidden {
			t.Errorf("DELETE %s (dir %q) = %d, want 403", c.path, c.dir, w.Code)
		}
	}
	if _, err := os.Stat(filepath.Join(root, "certs", "sha1-ab12.pw")); err != nil {
		t.Errorf("the certificate password file is gone: %v", err)
	}
	for _, dir := range []string{"", taskDir} {
		if w := do(http.MethodGet, "", dir, true); strings.Contains(w.Body.String(), "sha1-ab12") || strings.Contains(w.Body.String(), `"certs"`) {
			t.Errorf("listing of %q shows the certificates: %s", dir, w.Body.String())
		}
	}
}

// TestAgentQueuesRunsBehindSlots: runs sent beyond the node's task slots
// wait in order and start the moment a slot frees; a kill of a run still
// waiting drops it (reported killed, never started).
func TestAgentQueuesRunsBehindSlots(t *testing.T) {
	dir := t.TempDir()
	var (
		mu      sync.Mutex
		syncs   int
		joined  JoinRequest
		reports = map[string]RunReport{}
	)
	mark := func(name string) string { return "touch " + filepath.Join(dir, name) }
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		var out any
		switch r.URL.Path {
		case "/node/v1/join":
			_ = json.NewDecoder(r.Body).Decode(&joined)
			out = JoinResponse{NodeID: "n1", PoolID: "p1", Account: "a", TaskSlots: 1, PollSeconds: 1}
		case "/node/v1/sync":
			syncs++
			resp := SyncResponse{State: "running"}
			switch syncs {
			case 1:
				resp.Runs = []Run{
					{RunID: "j/a/1", Kind: "task", JobID: "j", TaskID: "a", CommandLine: "sleep 0.4; " + mark("a")},
					{RunID: "j/b/2", Kind: "task", JobID: "j", TaskID: "b", CommandLine: mark("b")},
					{RunID: "j/c/3", Kind: "task", JobID: "j", TaskID: "c", CommandLine: mark("c")},
				}
			case 2:
				resp.Kill = []string{"j/c/3"}
			default:
				mu.Unlock()
				time.Sleep(50 * time.Millisecond)
				mu.Lock()
			}
			out = resp
		case "/node/v1/report":
			var rr ReportRequest
			_ = json.NewDecoder(r.Body).Decode(&rr)
			for _, rep := range rr.Finished {
				reports[rep.RunID] = rep
			}
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
		// This test is about the agent's queue, not the sandbox (see
		// compat/sandbox_test.go).
		UnsafeSharedHost: true,
		Logger:           slog.New(slog.NewTextHandler(io.Discard, nil))})
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

	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		n := len(reports)
		mu.Unlock()
		if n == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of 3 runs reported: %+v", n, reports)
		}
		time.Sleep(10 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if !joined.QueueRuns {
		t.Error("the agent did not say at join that it queues runs")
	}
	ra, rb, rc := reports["j/a/1"], reports["j/b/2"], reports["j/c/3"]
	if ra.Failed() || rb.Failed() {
		t.Fatalf("runs failed: %+v %+v", ra, rb)
	}
	if rb.StartTime.Before(ra.EndTime) {
		t.Errorf("with one slot, b started at %s, before a ended at %s", rb.StartTime.Format(time.StampMicro), ra.EndTime.Format(time.StampMicro))
	}
	if !rc.Killed {
		t.Errorf("the killed queued run was reported %+v, want killed", rc)
	}
	if _, err := os.Stat(filepath.Join(dir, "c")); err == nil {
		t.Error("the run killed while it waited in the queue ran")
	}
	for _, f := range []string{"a", "b"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("run %s did not run: %v", f, err)
		}
	}
}
