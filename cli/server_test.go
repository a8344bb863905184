package cli_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"custody/cli"
)

// signalWriter collects output and closes seen once want was written.
type signalWriter struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	want string
	seen chan struct{}
	once sync.Once
}

func (w *signalWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n, err := w.buf.Write(p)
	if strings.Contains(w.buf.String(), w.want) {
		w.once.Do(func() { close(w.seen) })
	}
	return n, err
}

func (w *signalWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// TestServerKeepsSignInLinkOffRedirectedOutput runs `custody server` with
// stdout and stderr going to buffers, as when they are redirected to a log
// file: the one-time portal sign-in link must appear nowhere (none is
// even minted), and the user is told to run `custody portal`.
func TestServerKeepsSignInLinkOffRedirectedOutput(t *testing.T) {
	dir := t.TempDir()
	var stdout bytes.Buffer
	stderr := &signalWriter{want: "custody portal", seen: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan int, 1)
	go func() {
		done <- cli.Main(ctx, []string{"server", "--data-dir", dir, "--listen", "127.0.0.1:0"}, strings.NewReader(""), &stdout, stderr)
	}()
	select {
	case <-stderr.seen:
	case code := <-done:
		t.Fatalf("server exited %d: %s", code, stderr.String())
	case <-time.After(60 * time.Second):
		t.Fatalf("no portal line within 60 s: %s", stderr.String())
	}
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("server exited %d: %s", code, stderr.String())
	}
	all := stdout.String() + stderr.String()
	if strings.Contains(all, "signin") || strings.Contains(all, "within 15 minutes") {
		t.Fatalf("the sign-in link reached redirected output:\n%s", all)
	}
	if links, _ := os.ReadDir(filepath.Join(dir, "portal-signin")); len(links) != 0 {
		t.Fatalf("%d sign-in links were minted although none could be shown", len(links))
	}
}
