package sandbox

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// zygote is a node's sandbox zygote (see init.c): a small process, started
// once from this binary without its Go runtime, that clones each task's
// init as a child of this process. A start then costs a fork of that small
// process instead of a fork and execve of this large binary.
type zygote struct {
	mu  sync.Mutex
	fd  int // our end of the stream socket
	pid int
	// dirs are the directories its prepared root has for binds.
	dirs map[string]bool
}

const (
	zygoteMagic   = 0x637a7931
	zygoteMaxFDs  = 64
	zygoteMaxBody = 4 << 20
)

// startZygote starts a zygote whose prepared root (args, see
// Host.templateArgs) has dirs for binds; it lives in this process's control
// groups and dies with it.
func startZygote(args []string, dirs map[string]bool) (*zygote, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("sandbox: zygote socket: %w", err)
	}
	z := &zygote{fd: fds[0], dirs: dirs}
	defer unix.Close(fds[1])
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		z.close()
		return nil, err
	}
	defer devnull.Close()
	stR, stW, err := os.Pipe()
	if err != nil {
		z.close()
		return nil, err
	}
	defer stR.Close()
	z.pid, err = syscall.ForkExec("/proc/self/exe", args, &syscall.ProcAttr{
		Dir:   "/",
		Env:   []string{},
		Files: []uintptr{devnull.Fd(), devnull.Fd(), devnull.Fd(), uintptr(fds[1]), stW.Fd()},
		Sys:   &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL},
	})
	stW.Close()
	if err != nil {
		z.close()
		return nil, fmt.Errorf("sandbox: start the zygote: %w", err)
	}
	// It says it is ready once its prepared root is built, or why not.
	var b [1]byte
	if err := readAll(z.fd, b[:]); err != nil {
		msg, _ := io.ReadAll(io.LimitReader(stR, 4096))
		z.close()
		return nil, fmt.Errorf("sandbox: prepare the task root: %s", msg)
	}
	return z, nil
}

// spawn asks the zygote for a child running the init with argv and env,
// whose descriptors 0..len(files)-1 are files, placed in the control group
// of cgfd (-1: the zygote's own).
func (z *zygote) spawn(argv, env []string, files []uintptr, cgfd int) (int, error) {
	if len(files) > zygoteMaxFDs-1 {
		return 0, fmt.Errorf("sandbox: too many descriptors for a task (%d)", len(files))
	}
	var body []byte
	for _, s := range append(append([]string(nil), argv...), env...) {
		body = append(append(body, s...), 0)
	}
	if len(body) > zygoteMaxBody {
		return 0, fmt.Errorf("sandbox: the task's command line and environment are too large (%d bytes, at most %d)", len(body), zygoteMaxBody)
	}
	rights := make([]int, 0, len(files)+1)
	for _, f := range files {
		rights = append(rights, int(f))
	}
	cg := int32(0)
	if cgfd >= 0 {
		rights = append(rights, cgfd)
		cg = 1
	}
	var hdr [24]byte
	binary.NativeEndian.PutUint32(hdr[0:], zygoteMagic)
	binary.NativeEndian.PutUint32(hdr[4:], uint32(len(files)))
	binary.NativeEndian.PutUint32(hdr[8:], uint32(len(argv)))
	binary.NativeEndian.PutUint32(hdr[12:], uint32(len(env)))
	binary.NativeEndian.PutUint32(hdr[16:], uint32(len(body)))
	binary.NativeEndian.PutUint32(hdr[20:], uint32(cg))
	z.mu.Lock()
	defer z.mu.Unlock()
	if z.fd < 0 {
		return 0, errors.New("sandbox: the zygote has stopped")
	}
	if err := unix.Sendmsg(z.fd, hdr[:], unix.UnixRights(rights...), nil, 0); err != nil {
		z.closeLocked()
		return 0, fmt.Errorf("sandbox: ask the zygote: %w", err)
	}
	if err := writeAll(z.fd, body); err != nil {
		z.closeLocked()
		return 0, fmt.Errorf("sandbox: ask the zygote: %w", err)
	}
	var ans [4]byte
	if err := readAll(z.fd, ans[:]); err != nil {
		z.closeLocked()
		return 0, fmt.Errorf("sandbox: the zygote did not answer: %w", err)
	}
	pid := int32(binary.NativeEndian.Uint32(ans[:]))
	if pid < 0 {
		return 0, fmt.Errorf("sandbox: clone the task's init: %w", syscall.Errno(-pid))
	}
	return int(pid), nil
}

func writeAll(fd int, b []byte) error {
	for len(b) > 0 {
		n, err := unix.Write(fd, b)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

func readAll(fd int, b []byte) error {
	for len(b) > 0 {
		n, err := unix.Read(fd, b)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return err
		}
		if n == 0 {
			return errors.New("end of stream")
		}
		b = b[n:]
	}
	return nil
}

// close stops the zygote (closing its socket ends it; it is killed too).
func (z *zygote) close() {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.closeLocked()
}

func (z *zygote) closeLocked() {
	if z.fd >= 0 {
		unix.Close(z.fd)
		z.fd = -1
	}
	if z.pid > 0 {
		_ = syscall.Kill(z.pid, syscall.SIGKILL)
		// Reap it, unless a reaper of every child (a node's Runner) did.
		var ws syscall.WaitStatus
		for {
			_, err := syscall.Wait4(z.pid, &ws, 0, nil)
			if !errors.Is(err, syscall.EINTR) {
				break
			}
		}
		z.pid = 0
	}
}
