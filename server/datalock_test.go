package server_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"custody/server"
	"custody/server/servertest"
)

// TestSQLiteOneServer: a second server on the same SQLite data directory
// refuses to start and says which process holds it; once the first has
// stopped, a new one starts.
func TestSQLiteOneServer(t *testing.T) {
	first := servertest.New(t, func(c *server.Config) { c.DisableLocalNodes = true })
	dir := first.DataDir()

	cfg := server.DefaultConfig()
	cfg.Listen, cfg.DataDir, cfg.DisableLocalNodes = "127.0.0.1:0", dir, true
	s, err := server.Open(context.Background(), cfg)
	if err == nil {
		s.Close()
		t.Fatal("a second server on the same SQLite data directory started")
	}
	for _, want := range []string{"another custody server", fmt.Sprintf("process %d", os.Getpid()), dir, "--database postgres://"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("second server: %v; want it to say %q", err, want)
		}
	}
	if b, err := os.ReadFile(filepath.Join(dir, server.LockFile)); err != nil || strings.TrimSpace(string(b)) != fmt.Sprint(os.Getpid()) {
		t.Errorf("lock file = %q, %v; want this process's id", b, err)
	}

	if err := first.Stop(); err != nil {
		t.Fatal(err)
	}
	s, err = server.Open(context.Background(), cfg)
	if err != nil {
		t.Fatalf("a server after the first stopped: %v", err)
	}
	s.Close()
}
