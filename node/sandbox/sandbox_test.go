package sandbox

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// requireHost returns a sandbox host or skips (fails in CI, which runs as
// root on Linux and must run the sandbox tests for real).
func requireHost(t *testing.T) *Host {
	t.Helper()
	h, err := Probe()
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("the task sandbox cannot be built in CI: %v", err)
		}
		t.Skipf("the task sandbox cannot be built here: %v", err)
	}
	return h
}

func TestProbe(t *testing.T) {
	requireHost(t)
}

// TestPreparedRootStaysReadOnly: the root every task of a node shares with
// the others (its zygote's prepared tree: the root, /dev, the system
// directories) cannot be changed by a task, not even by root of its user
// namespace (elevationLevel admin): no file can be written there, no mount
// of it made writable or taken away; what the task may change (/tmp,
// /dev/shm, the node's directory) is its own and the next task does not
// see it.
func TestPreparedRootStaysReadOnly(t *testing.T) {
	h := requireHost(t)
	n, err := h.NewNode("test-prepared-root", Limits{CPUs: 1, MemoryBytes: 256 << 20, Pids: 64, DiskBytes: 1 << 20, TmpBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	run := func(name, script string) string {
		t.Helper()
		path := filepath.Join(dir, name)
		out, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		defer out.Close()
		p, err := n.Start(Task{Key: name, Argv: []string{"/bin/sh", "-c", script}, Env: []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}, Dir: "/",
			Stdout: out, Stderr: out, UID: 65534, GID: 65534, Admin: true, AdminUID: 65533, Binds: []string{dir}}, func(int, *Process) {})
		if err != nil {
			t.Fatal(err)
		}
		var ws syscall.WaitStatus
		syscall.Wait4(p.Pid, &ws, 0, nil)
		p.Release()
		b, _ := os.ReadFile(path)
		return strings.TrimSpace(string(b))
	}
	got := run("first", `
		test "$(id -u)" = 0 || echo "not root of its namespace: $(id -u)"
		command -v mount >/dev/null && command -v umount >/dev/null || echo "no mount or umount command"
		for f in /x /dev/x /usr/x /etc/x; do (echo x > $f) 2>/dev/null && echo "wrote $f"; done
		for m in / /dev /usr /etc; do mount -o remount,bind,rw $m 2>/dev/null && echo "made $m writable"; done
		for m in /usr /dev/null; do umount -l $m 2>/dev/null && echo "unmounted $m"; done
		echo mine > /tmp/mine && echo mine > /dev/shm/mine || echo "cannot write /tmp or /dev/shm"
		echo done`)
	if got != "done" {
		t.Errorf("an admin task changed the shared root:\n%s", got)
	}
	if got := run("second", `for f in /tmp/mine /dev/shm/mine; do test -e $f && echo "sees $f"; done; echo done`); got != "done" {
		t.Errorf("the next task sees the first one's files:\n%s", got)
	}
}
