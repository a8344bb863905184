package sandbox

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Limits is what one node (and each task on it) may use of the machine:
// the budget of the pool's vmSize.
type Limits struct {
	CPUs        int
	MemoryBytes int64
	// Pids bounds the processes and threads of the node, and of each task.
	Pids int64
	// DiskBytes bounds each task's files (working directory, stdout.txt,
	// stderr.txt); it is also every file's size limit (RLIMIT_FSIZE).
	DiskBytes int64
	// TmpBytes bounds each task's private /tmp (memory-backed, so it also
	// counts against MemoryBytes).
	TmpBytes int64
}

// SystemDirs are the host directories every task sees, read-only (those
// that exist; a symbolic link such as /bin -> usr/bin is recreated as one).
var SystemDirs = []string{"/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/usr", "/etc", "/opt"}

// Host is a host that can build task sandboxes.
type Host struct {
	cg cgroupHost
	// mountpoint is an empty directory each task's root tmpfs is mounted
	// on (in the task's own mount namespace; the host never sees it).
	mountpoint string
}

var (
	probeOnce sync.Once
	probeHost *Host
	probeErr  error
)

// Probe checks, once per process, that this host can build sandboxes, by
// building one and running a command in it. The error says what is missing
// and what to do.
func Probe() (*Host, error) {
	probeOnce.Do(func() { probeHost, probeErr = probe() })
	return probeHost, probeErr
}

func probe() (*Host, error) {
	if !initLinked {
		return nil, errors.New("this custody binary was built without cgo, so the task sandbox's init is missing: build it with CGO_ENABLED=1 and a C compiler")
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("the task sandbox needs root (to give each pool its own users and to create control groups): run the server or node agent as root")
	}
	cg, err := detectCgroups()
	if err != nil {
		return nil, err
	}
	mp, err := os.MkdirTemp("", "custody-sandbox-")
	if err != nil {
		return nil, fmt.Errorf("create the sandbox mount point: %w", err)
	}
	h := &Host{cg: cg, mountpoint: mp}
	// Build a real sandbox and run a command in it.
	n, err := h.NewNode("probe-"+strconv.Itoa(os.Getpid()), Limits{CPUs: 1, MemoryBytes: 64 << 20, Pids: 16, DiskBytes: 1 << 20, TmpBytes: 1 << 20})
	if err != nil {
		return nil, fmt.Errorf("create control groups (is /sys/fs/cgroup writable?): %w", err)
	}
	defer n.Close()
	dir, err := os.MkdirTemp("", "custody-sandbox-probe-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	out, err := os.Create(filepath.Join(dir, "out"))
	if err != nil {
		return nil, err
	}
	defer out.Close()
	p, err := n.Start(Task{Key: "probe", Argv: []string{"/bin/sh", "-c", "test $$ = 1 && test ! -e " + dir + "/out && echo ok"},
		Env: []string{"PATH=/usr/bin:/bin"}, Dir: "/", Stdout: out, Stderr: out, UID: 65534, GID: 65534, AdminUID: 65533, Hostname: "probe"})
	if err != nil {
		return nil, fmt.Errorf("user, mount and PID namespaces: %w (unprivileged user namespaces or /proc/sys/user/max_user_namespaces may be disabled)", err)
	}
	var ws syscall.WaitStatus
	for {
		_, err = syscall.Wait4(p.Pid, &ws, 0, nil)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if errors.Is(err, syscall.ECHILD) {
		// Another reaper in this process (a node's Runner) collected it:
		// its output tells.
		for i := 0; i < 500 && err != nil; i++ {
			if b, _ := os.ReadFile(out.Name()); string(b) == "ok\n" {
				err = nil
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	p.Release()
	b, _ := os.ReadFile(out.Name())
	if err != nil || ws.ExitStatus() != 0 || strings.TrimSpace(string(b)) != "ok" {
		return nil, fmt.Errorf("a command in a test sandbox did not run as expected (exit %d, output %q)", ws.ExitStatus(), b)
	}
	return h, nil
}

// Node is the control group of one node, under which each task gets its own.
type Node struct {
	host *Host
	name string
	cg   *cgroup
	lim  Limits
}

// NewNode creates the node's control group with limits l (removing any left
// by an agent of the same name that died).
func (h *Host) NewNode(name string, l Limits) (*Node, error) {
	if strings.ContainsAny(name, "/\x00") || name == "" || name == "." || name == ".." {
		return nil, fmt.Errorf("sandbox: bad node name %q", name)
	}
	rel := filepath.Join("custody", name)
	h.cg.removeTree(rel)
	cg, err := h.cg.create(rel, l)
	if err != nil {
		return nil, err
	}
	return &Node{host: h, name: name, cg: cg, lim: l}, nil
}

// Limits returns the node's limits.
func (n *Node) Limits() Limits { return n.lim }

// Close kills everything left in the node's groups and removes them.
func (n *Node) Close() error {
	n.host.cg.removeTree(n.cg.rel)
	return nil
}

// Task is one process tree to run in a sandbox.
type Task struct {
	// Key names the task's control group (unique among the node's running
	// tasks).
	Key string
	// Argv is the command; Argv[0] is a path inside the sandbox.
	Argv []string
	Env  []string
	// Dir is the working directory (a path inside the sandbox).
	Dir            string
	Stdout, Stderr *os.File
	// Binds are host directories shown read-write at the same path (the
	// node's root directory); ReadOnlyBinds are shown read-only.
	Binds, ReadOnlyBinds []string
	// UID and GID are the host user and group the task runs as; with Admin,
	// the task is root of its user namespace instead, mapped to AdminUID.
	UID, GID int
	Admin    bool
	AdminUID int
	Hostname string
}

// Process is a running sandboxed task: Pid is its PID 1 (the command),
// seen from the host.
type Process struct {
	Pid int
	cg  *cgroup
	// goW is the agent's end of the pipe the init waits on; it stays open
	// while the task runs (the init checks it after changing users).
	goW *os.File
}

// Kill kills the task's every process: PID 1 of its namespace (the kernel
// then kills the rest) and whatever is in its control group.
func (p *Process) Kill() {
	_ = syscall.Kill(p.Pid, syscall.SIGKILL)
	p.cg.kill()
}

// OOMKilled reports whether the kernel killed a process of the task for
// exceeding its memory limit.
func (p *Process) OOMKilled() bool { return p.cg.oomKilled() }

// Release removes the task's control group; call it once the process has
// been reaped.
func (p *Process) Release() {
	_ = p.cg.remove()
	if p.goW != nil {
		p.goW.Close()
	}
}

// Start starts t in a new sandbox under n. The caller reaps Pid (wait4) and
// then calls Release.
func (n *Node) Start(t Task) (*Process, error) {
	if t.Key == "" || strings.ContainsAny(t.Key, "/\x00") || t.Key == "." || t.Key == ".." {
		return nil, fmt.Errorf("sandbox: bad task key %q", t.Key)
	}
	if len(t.Argv) == 0 {
		return nil, errors.New("sandbox: no command")
	}
	adminUID := t.AdminUID
	if adminUID <= 0 || t.UID <= 0 || t.GID <= 0 || adminUID == t.UID || adminUID == t.GID {
		return nil, fmt.Errorf("sandbox: the task's user (%d:%d) and admin user (%d) must be distinct host ids other than root", t.UID, t.GID, adminUID)
	}
	cg, err := n.host.cg.create(filepath.Join(n.cg.rel, t.Key), n.lim)
	if err != nil {
		return nil, err
	}
	cgfd, err := cg.openV2()
	if err != nil {
		cg.remove()
		return nil, err
	}
	if cgfd >= 0 {
		defer syscall.Close(cgfd)
	}
	goR, goW, err := os.Pipe()
	if err != nil {
		cg.remove()
		return nil, err
	}
	defer goR.Close()
	stR, stW, err := os.Pipe()
	if err != nil {
		goW.Close()
		cg.remove()
		return nil, err
	}
	defer stR.Close()
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		stW.Close()
		goW.Close()
		cg.remove()
		return nil, err
	}
	defer devnull.Close()

	// The directories to show are cloned here, as root, into detached
	// mount trees (open_tree) that the init attaches: their parents need
	// not be searchable by the task's users.
	var binds []*os.File
	defer func() {
		for _, f := range binds {
			f.Close()
		}
	}()
	var bindArgs []string
	for i, list := range [][]string{t.ReadOnlyBinds, t.Binds} {
		for _, dir := range list {
			fd, err := unix.OpenTree(unix.AT_FDCWD, dir, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_RECURSIVE)
			if err != nil {
				goW.Close()
				stW.Close()
				cg.remove()
				return nil, fmt.Errorf("sandbox: open %s: %w", dir, err)
			}
			kind := "rofd="
			if i == 1 {
				kind = "rwfd="
			}
			bindArgs = append(bindArgs, kind+strconv.Itoa(5+len(binds))+":"+dir)
			binds = append(binds, os.NewFile(uintptr(fd), dir))
		}
	}
	argv := n.host.initArgs(t, n.lim, bindArgs)
	uidMap := []syscall.SysProcIDMap{{ContainerID: 0, HostID: adminUID, Size: 1}}
	gidMap := []syscall.SysProcIDMap{{ContainerID: 0, HostID: adminUID, Size: 1}}
	uidMap = append(uidMap, syscall.SysProcIDMap{ContainerID: t.UID, HostID: t.UID, Size: 1})
	gidMap = append(gidMap, syscall.SysProcIDMap{ContainerID: t.GID, HostID: t.GID, Size: 1})
	files := []uintptr{devnull.Fd(), t.Stdout.Fd(), t.Stderr.Fd(), goR.Fd(), stW.Fd()}
	for _, f := range binds {
		files = append(files, f.Fd())
	}
	attr := &syscall.ProcAttr{
		Dir:   "/",
		Env:   t.Env,
		Files: files,
		Sys: &syscall.SysProcAttr{
			Cloneflags:                 syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS | syscall.CLONE_NEWPID | syscall.CLONE_NEWIPC | syscall.CLONE_NEWUTS,
			UidMappings:                uidMap,
			GidMappings:                gidMap,
			GidMappingsEnableSetgroups: true,
			// Become root of the new namespace (host user AdminUID, or the
			// task's user for a non-admin task): creating a user namespace
			// does not change the process's own ids.
			Credential:  &syscall.Credential{Uid: 0, Gid: 0},
			Setpgid:     true,
			Pdeathsig:   syscall.SIGKILL,
			UseCgroupFD: cgfd >= 0,
			CgroupFD:    cgfd,
		},
	}
	pid, err := syscall.ForkExec("/proc/self/exe", argv, attr)
	stW.Close()
	if err != nil {
		goW.Close()
		cg.remove()
		return nil, fmt.Errorf("start the sandbox: %w", err)
	}
	p := &Process{Pid: pid, cg: cg, goW: goW}
	if err := cg.placeV1(pid); err != nil {
		p.Kill()
		return p, fmt.Errorf("place the task in its control groups: %w", err)
	}
	if _, err := goW.Write([]byte{1}); err != nil {
		p.Kill()
		return p, fmt.Errorf("start the sandbox: %w", err)
	}
	// The init closes its end of the status pipe when it execs the command,
	// or writes why it could not.
	msg, _ := io.ReadAll(io.LimitReader(stR, 4096))
	if len(msg) > 0 {
		p.Kill()
		return p, errors.New(string(msg))
	}
	return p, nil
}

// initArgs is the init's command line (see init.c).
func (h *Host) initArgs(t Task, l Limits, bindArgs []string) []string {
	uid, gid := t.UID, t.GID
	if t.Admin {
		uid = 0
	}
	a := []string{"custody-sandbox-init", "root=" + h.mountpoint, "cwd=" + t.Dir,
		"uid=" + strconv.Itoa(uid), "gid=" + strconv.Itoa(gid), "hostname=" + t.Hostname,
		"tmp=" + strconv.FormatInt(max(l.TmpBytes, 1<<20), 10)}
	if l.DiskBytes > 0 {
		a = append(a, "fsize="+strconv.FormatInt(l.DiskBytes, 10))
	}
	for _, d := range SystemDirs {
		st, err := os.Lstat(d)
		switch {
		case err != nil:
		case st.Mode()&os.ModeSymlink != 0:
			if target, err := os.Readlink(d); err == nil {
				a = append(a, "link="+d+":"+target)
			}
		case st.IsDir():
			a = append(a, "ro="+d)
		}
	}
	a = append(a, bindArgs...)
	return append(append(a, "--"), t.Argv...)
}
