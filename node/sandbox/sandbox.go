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
	n, err := h.newNode("probe-"+strconv.Itoa(os.Getpid()), Limits{CPUs: 1, MemoryBytes: 64 << 20, Pids: 16, DiskBytes: 1 << 20, TmpBytes: 1 << 20}, false)
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
		Env: []string{"PATH=/usr/bin:/bin"}, Dir: "/", Stdout: out, Stderr: out, UID: 65534, GID: 65534, AdminUID: 65533, Hostname: "probe"},
		func(int, *Process) {})
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

// AgentPidsReserve is how many processes and threads a node's control
// group holds beyond its tasks' budget, for the agent that lives in it.
const AgentPidsReserve = 256

// Node is the control group of one node, under which each task's processes
// run. On a cgroup v2 host every task gets a group of its own beneath it
// (clone3 puts the task there at its creation); on a cgroup v1 host the
// agent itself joins the node's groups, so that everything it starts is
// held to the node's limits from its first instruction without a write per
// task (the task's PID namespace, not a control group, is what kills all
// of its processes).
type Node struct {
	host    *Host
	cg      *cgroup
	lim     Limits
	perTask bool

	// zy is the node's zygote, started with its first task and again if it
	// stopped.
	zmu sync.Mutex
	zy  *zygote
}

// zygote returns the node's running zygote whose prepared root has the
// directories dsts go on, starting one if needed (with those of the one it
// replaces).
func (n *Node) zygote(dsts []string) (*zygote, error) {
	n.zmu.Lock()
	defer n.zmu.Unlock()
	dirs := map[string]bool{}
	if z := n.zy; z != nil {
		z.mu.Lock()
		alive := z.fd >= 0
		z.mu.Unlock()
		has := true
		for _, d := range dsts {
			has = has && z.dirs[d]
		}
		if alive && has {
			return z, nil
		}
		for d := range z.dirs {
			dirs[d] = true
		}
		z.close()
		n.zy = nil
	}
	for _, d := range dsts {
		dirs[d] = true
	}
	z, err := startZygote(n.host.templateArgs(dirs), dirs)
	if err != nil {
		return nil, err
	}
	n.zy = z
	return z, nil
}

// NewNode creates the node's control group with limits l (removing any left
// by an agent of the same name that died).
func (h *Host) NewNode(name string, l Limits) (*Node, error) { return h.newNode(name, l, true) }

func (h *Host) newNode(name string, l Limits, join bool) (*Node, error) {
	if strings.ContainsAny(name, "/\x00") || name == "" || name == "." || name == ".." {
		return nil, fmt.Errorf("sandbox: bad node name %q", name)
	}
	rel := filepath.Join("custody", name)
	h.cg.removeTree(rel)
	group := l
	if join && !h.cg.v2Limits {
		// The agent lives in the group too: a reserve of processes and
		// threads of its own, above what its tasks may have (each task's
		// user is held to l.Pids by RLIMIT_NPROC).
		group.Pids += AgentPidsReserve
	}
	cg, err := h.cg.create(rel, group)
	if err != nil {
		return nil, err
	}
	n := &Node{host: h, cg: cg, lim: l, perTask: h.cg.v2Limits}
	if !join {
		// The probe's node: the caller stays where it is (its tasks get
		// groups of their own, which only cgroup2 places them in).
		n.perTask = true
		return n, nil
	}
	if !n.perTask {
		if err := cg.joinV1(os.Getpid()); err != nil {
			cg.remove()
			return nil, fmt.Errorf("join the node's control groups: %w", err)
		}
	}
	return n, nil
}

// Limits returns the node's limits.
func (n *Node) Limits() Limits { return n.lim }

// OOMKills returns how many processes the kernel has killed for exceeding
// the node's memory limit.
func (n *Node) OOMKills() int64 { return n.cg.oomKills() }

// Close kills everything left in the node's groups and removes them (the
// agent leaves them first).
func (n *Node) Close() error {
	n.zmu.Lock()
	if n.zy != nil {
		n.zy.close()
		n.zy = nil
	}
	n.zmu.Unlock()
	if !n.perTask {
		n.cg.leaveV1(os.Getpid())
	}
	n.host.cg.removeTree(n.cg.rel)
	return nil
}

// Task is one process tree to run in a sandbox.
type Task struct {
	// Key names the task's control group on a cgroup v2 host (unique among
	// the node's running tasks).
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

// Process is a running sandboxed task. Pid is its init, seen from the
// host: the parent of the task's PID 1, ending as PID 1 ends.
type Process struct {
	Pid  int
	node *Node
	cg   *cgroup // nil on cgroup v1 hosts
	// goW is the agent's end of the pipe the init waits on.
	goW  *os.File
	ooms int64
	// mntns holds the task's mount namespace (-1: none), so that tearing
	// it down (unmounting its tree waits for RCU grace periods) happens
	// after the task is reported, not before its init can exit.
	mntns int
}

// Kill kills the task's every process: its init (PID 1 has it as its
// parent-death signal, and the kernel kills the rest of the namespace with
// PID 1) and whatever is in its control group.
func (p *Process) Kill() {
	_ = syscall.Kill(p.Pid, syscall.SIGKILL)
	if p.cg != nil {
		p.cg.kill()
	}
}

// OOMKilled reports whether the kernel killed a process of the task for
// exceeding its memory limit; ws is how the init ended. On a cgroup v1 host
// the node's count of such kills must have grown while the task ran, and
// the task must have ended by SIGKILL or with the status a shell gives a
// command SIGKILL ended (137).
func (p *Process) OOMKilled(ws syscall.WaitStatus) bool {
	if p.cg != nil {
		return p.cg.oomKills() > 0
	}
	killed := (ws.Signaled() && ws.Signal() == syscall.SIGKILL) || (ws.Exited() && ws.ExitStatus() == 128+int(syscall.SIGKILL))
	return killed && p.node.OOMKills() > p.ooms
}

// Release removes the task's control group; call it once the init has
// been reaped.
func (p *Process) Release() {
	if p.cg != nil {
		_ = p.cg.remove()
	}
	if p.goW != nil {
		p.goW.Close()
	}
	if p.mntns >= 0 {
		go syscall.Close(p.mntns)
		p.mntns = -1
	}
}

// Start starts t in a new sandbox under n. Once the init exists, register
// is called with its pid (before the init can end), so a reaper that waits
// for any child can tell it from others. The caller reaps Pid (wait4) and
// then calls Release; on an error after register, the init has been killed
// and must still be reaped.
func (n *Node) Start(t Task, register func(pid int, p *Process)) (*Process, error) {
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
	var closers []io.Closer
	defer func() {
		for _, c := range closers {
			c.Close()
		}
	}()
	p := &Process{node: n, ooms: n.OOMKills(), mntns: -1}
	cgfd := -1
	if n.perTask {
		cg, err := n.host.cg.create(filepath.Join(n.cg.rel, t.Key), n.lim)
		if err != nil {
			return nil, err
		}
		if cgfd, err = cg.openV2(); err != nil {
			cg.remove()
			return nil, err
		}
		p.cg = cg
		closers = append(closers, fdCloser(cgfd))
	}
	fail := func(err error) (*Process, error) {
		if p.cg != nil {
			p.cg.remove()
		}
		return nil, err
	}
	pipe := func() (r, w *os.File, err error) {
		if r, w, err = os.Pipe(); err == nil {
			closers = append(closers, r, w)
		}
		return
	}
	goR, goW, err := pipe()
	if err != nil {
		return fail(err)
	}
	stR, stW, err := pipe()
	if err != nil {
		return fail(err)
	}
	readyR, readyW, err := pipe()
	if err != nil {
		return fail(err)
	}
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return fail(err)
	}
	closers = append(closers, devnull)
	files := []uintptr{devnull.Fd(), t.Stdout.Fd(), t.Stderr.Fd(), goR.Fd(), stW.Fd(), readyW.Fd()}
	// The directories to show are cloned here, as root, into detached
	// mount trees (open_tree) that the init attaches: their parents need
	// not be searchable by the task's users.
	var bindArgs []string
	for i, list := range [][]string{t.ReadOnlyBinds, t.Binds} {
		for _, dir := range list {
			fd, err := unix.OpenTree(unix.AT_FDCWD, dir, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_RECURSIVE)
			if err != nil {
				return fail(fmt.Errorf("sandbox: open %s: %w", dir, err))
			}
			closers = append(closers, fdCloser(fd))
			kind := "rofd="
			if i == 1 {
				kind = "rwfd="
			}
			bindArgs = append(bindArgs, kind+strconv.Itoa(len(files))+":"+dir)
			files = append(files, uintptr(fd))
		}
	}
	// The node's zygote clones the init as a child of this process (in its
	// own process group, dying with this process, in the task's control
	// group on a cgroup v2 host).
	z, err := n.zygote(append(append([]string(nil), t.ReadOnlyBinds...), t.Binds...))
	if err != nil {
		return fail(err)
	}
	pid, err := z.spawn(n.host.initArgs(t, n.lim, bindArgs), t.Env, files, cgfd)
	if err != nil {
		return fail(fmt.Errorf("start the sandbox: %w", err))
	}
	p.Pid = pid
	register(pid, p)
	// Ours now: the init waits on it until the task ends.
	closers = closers[:0:0]
	defer goR.Close()
	defer stR.Close()
	defer readyR.Close()
	defer devnull.Close()
	stW.Close()
	readyW.Close()
	p.goW = goW
	failed := func(err error) (*Process, error) {
		p.Kill()
		return p, err
	}
	// The init has made its user namespace: map its root to the task's
	// admin user and the task's user to itself.
	var b [1]byte
	if _, err := io.ReadFull(readyR, b[:]); err != nil {
		msg, _ := io.ReadAll(io.LimitReader(stR, 4096))
		return failed(fmt.Errorf("start the sandbox: %s", msg))
	}
	proc := "/proc/" + strconv.Itoa(pid) + "/"
	if err := os.WriteFile(proc+"uid_map", []byte(fmt.Sprintf("0 %d 1\n%d %d 1\n", adminUID, t.UID, t.UID)), 0); err != nil {
		return failed(fmt.Errorf("sandbox: write the user map: %w", err))
	}
	if err := os.WriteFile(proc+"gid_map", []byte(fmt.Sprintf("0 %d 1\n%d %d 1\n", adminUID, t.GID, t.GID)), 0); err != nil {
		return failed(fmt.Errorf("sandbox: write the group map: %w", err))
	}
	if _, err := goW.Write([]byte{1}); err != nil {
		return failed(fmt.Errorf("start the sandbox: %w", err))
	}
	// PID 1 closes the status pipe when it execs the command, or writes
	// why it could not.
	if msg, _ := io.ReadAll(io.LimitReader(stR, 4096)); len(msg) > 0 {
		return failed(errors.New(string(msg)))
	}
	if fd, err := unix.Open(proc+"ns/mnt", unix.O_RDONLY|unix.O_CLOEXEC, 0); err == nil {
		p.mntns = fd
	}
	return p, nil
}

type fdCloser int

func (fd fdCloser) Close() error { return syscall.Close(int(fd)) }

// initArgs is the init's command line (see init.c): its root is the
// zygote's prepared one ("template").
func (h *Host) initArgs(t Task, l Limits, bindArgs []string) []string {
	uid, gid := t.UID, t.GID
	if t.Admin {
		uid = 0
	}
	a := []string{"custody-sandbox-init", "root=" + h.mountpoint, "cwd=" + t.Dir,
		"uid=" + strconv.Itoa(uid), "gid=" + strconv.Itoa(gid), "hostname=" + t.Hostname,
		"tmp=" + strconv.FormatInt(max(l.TmpBytes, 1<<20), 10), "template"}
	if l.Pids > 0 {
		a = append(a, "nproc="+strconv.FormatInt(l.Pids, 10))
	}
	if l.DiskBytes > 0 {
		a = append(a, "fsize="+strconv.FormatInt(l.DiskBytes, 10))
	}
	a = append(a, bindArgs...)
	return append(append(a, "--"), t.Argv...)
}

// templateArgs is the zygote's command line (see init.c): the part of every
// task's root that is the same for all (/dev, the system directories,
// read-only, or the links that stand for them) and the directories the
// node's binds go on.
func (h *Host) templateArgs(dirs map[string]bool) []string {
	a := []string{"custody-sandbox-zygote", "root=" + h.mountpoint}
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
	for d := range dirs {
		a = append(a, "dir="+d)
	}
	return a
}
