package server

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// LockFile is the file in the data directory a server on the embedded
// SQLite database holds an exclusive lock on for its whole life: SQLite has
// one server only.
const LockFile = "server.lock"

// lockDataDir takes the exclusive lock on dataDir/server.lock, without
// waiting, and writes this process's id into the file. The lock lasts until
// the returned file is closed or the process ends, however it ends.
func lockDataDir(dataDir string) (*os.File, error) {
	path := filepath.Join(dataDir, LockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("data directory lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder := ""
		if b, rerr := os.ReadFile(path); rerr == nil {
			if pid, perr := strconv.Atoi(strings.TrimSpace(string(b))); perr == nil && pid > 0 {
				holder = fmt.Sprintf(" (process %d)", pid)
			}
		}
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("another custody server%s is running on the data directory %s with its SQLite database; "+
				"SQLite serves one server only: stop that one first, or run several replicas on PostgreSQL (--database postgres://...)", holder, dataDir)
		}
		return nil, fmt.Errorf("data directory lock %s: %w", path, err)
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return f, nil
}
