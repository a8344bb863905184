package sandbox

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// BenchmarkStart: start and reap `true` in a sandbox, one at a time, against
// a plain fork and exec of /bin/sh -c true.
func BenchmarkStart(b *testing.B) {
	h, err := Probe()
	if err != nil {
		b.Skip(err)
	}
	n, err := h.NewNode("bench", Limits{CPUs: 2, MemoryBytes: 1 << 30, Pids: 256, DiskBytes: 1 << 20, TmpBytes: 1 << 20})
	if err != nil {
		b.Fatal(err)
	}
	defer n.Close()
	dir := b.TempDir()
	out, _ := os.Create(filepath.Join(dir, "out"))
	defer out.Close()
	b.Run("sandbox", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			p, err := n.Start(Task{Key: "b", Argv: []string{"/bin/sh", "-c", "true"}, Env: []string{"PATH=/usr/bin:/bin"}, Dir: "/",
				Stdout: out, Stderr: out, UID: 65534, GID: 65534, AdminUID: 65533, Binds: []string{dir}}, func(int, *Process) {})
			if err != nil {
				b.Fatal(err)
			}
			var ws syscall.WaitStatus
			syscall.Wait4(p.Pid, &ws, 0, nil)
			p.Release()
		}
	})
	b.Run("plain", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			pid, err := syscall.ForkExec("/bin/sh", []string{"/bin/sh", "-c", "true"}, &syscall.ProcAttr{Files: []uintptr{0, out.Fd(), out.Fd()},
				Sys: &syscall.SysProcAttr{Setpgid: true}})
			if err != nil {
				b.Fatal(err)
			}
			var ws syscall.WaitStatus
			syscall.Wait4(pid, &ws, 0, nil)
		}
	})
}
