package node

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"

	"custody/node/sandbox"
)

// ErrNoSandbox wraps the reason a node cannot sandbox its tasks.
var ErrNoSandbox = errors.New("this host cannot sandbox tasks")

// setUpSandbox checks that the host can sandbox tasks and takes a range of
// task user ids.
func (a *Agent) setUpSandbox() error {
	h, err := sandbox.Probe()
	if err != nil {
		return fmt.Errorf("node: %w: %v. Tasks would run as the agent's own user and could read everything it can; fix the cause, or pass --unsafe-shared-host to accept that", ErrNoSandbox, err)
	}
	base := a.cfg.UIDBase
	if base <= 0 {
		base = DefaultUIDBase
	}
	users, err := takeRange(base)
	if err != nil {
		return err
	}
	if a.cfg.OwnMountNamespace {
		// Mounts made here (the certificate tmpfs) stay in this namespace
		// and go away with it.
		if err := syscall.Mount("", "/", "", syscall.MS_REC|syscall.MS_SLAVE, ""); err != nil {
			users.close()
			return fmt.Errorf("node: make the agent's mounts private: %w", err)
		}
	}
	if err := os.Chmod(a.cfg.Root, 0o755); err != nil {
		users.close()
		return err
	}
	// The certificate directory exists (empty until the pool has some) so
	// that every sandbox can show it.
	if err := os.MkdirAll(a.cfg.certificatesDir(), 0o750); err != nil {
		users.close()
		return err
	}
	a.sbHost, a.users = h, users
	return nil
}

func (a *Agent) tearDownSandbox() {
	a.removeCerts()
	if a.sbNode != nil {
		a.sbNode.Close()
	}
	a.users.close()
}

// sandboxNode creates (or keeps) the node's control group with the limits
// the server sent at join.
func (a *Agent) sandboxNode(jr JoinResponse) error {
	if a.sbHost == nil {
		return nil
	}
	l := jr.Limits
	if l.CPUs <= 0 || l.MemoryBytes <= 0 {
		l = NodeLimits{CPUs: 1, MemoryBytes: 2 << 30, Pids: 1024, DiskBytes: 10 << 30}
	}
	lim := sandbox.Limits{CPUs: l.CPUs, MemoryBytes: l.MemoryBytes, Pids: max(l.Pids, 64), DiskBytes: l.DiskBytes, TmpBytes: l.MemoryBytes / 2}
	if a.sbNode != nil {
		if a.sbNode.Limits() == lim {
			return nil
		}
		a.sbNode.Close()
		a.sbNode = nil
	}
	n, err := a.sbHost.NewNode(a.users.name, lim)
	if err != nil {
		return fmt.Errorf("node: %w", err)
	}
	a.sbNode = n
	return nil
}

// sandboxSpec is how run r is sandboxed: its user, the node's root bound
// read-write, the shared directory ready for the pool's users.
func (a *Agent) sandboxSpec(r Run, accounts []UserAccount) (*SandboxSpec, int, error) {
	t, slot, err := a.runUser(r.UserIdentity, accounts)
	if err != nil {
		return nil, -1, err
	}
	if err := a.sharedDir(); err != nil {
		a.releaseSlot(slot)
		return nil, -1, err
	}
	a.mu.Lock()
	host := a.nodeID
	a.mu.Unlock()
	if len(host) > 64 {
		host = host[:64]
	}
	return &SandboxSpec{Node: a.sbNode, UID: t.UID, GID: t.GID, AdminUID: t.AdminUID, Admin: t.Admin,
		Binds: []string{a.cfg.Root}, ReadOnlyBinds: []string{a.cfg.certificatesDir()}, Hostname: host}, slot, nil
}

// sharedDir makes the node's shared directory ready for the pool's users:
// owned by the pool user and group, setgid, 0770. A directory that is so
// already is left alone (each change of an inode is a metadata write).
func (a *Agent) sharedDir() error {
	shared := filepath.Join(a.cfg.Root, "shared")
	uid, gid, mode := a.users.poolUser(), a.users.group(), os.ModeDir|os.ModeSetgid|0o770
	if fi, err := os.Lstat(shared); err == nil {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && fi.Mode() == mode && int(st.Uid) == uid && int(st.Gid) == gid {
			return nil
		}
	}
	if err := os.MkdirAll(shared, 0o770); err != nil {
		return err
	}
	if err := os.Chown(shared, uid, gid); err != nil {
		return err
	}
	return os.Chmod(shared, os.ModeSetgid|0o770)
}

func (a *Agent) releaseSlot(slot int) {
	if slot >= 0 && a.users != nil {
		a.mu.Lock()
		a.users.releaseSlot(slot)
		a.mu.Unlock()
	}
}

// certsDir returns the certificate directory, {root}/certs: with the
// sandbox, a tmpfs of its own (memory only, never on disk), owned by root
// and readable by the pool's group; without, a plain directory only the
// agent's user can read.
func (a *Agent) certsDir() (string, error) {
	dir := a.cfg.certificatesDir()
	a.removeCerts()
	if a.users == nil {
		return dir, os.MkdirAll(dir, 0o700)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	opts := "mode=0750,uid=0,gid=" + strconv.Itoa(a.users.group()) + ",size=16m"
	if err := syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV|syscall.MS_NOEXEC, opts); err != nil {
		return "", fmt.Errorf("mount the certificate tmpfs: %w", err)
	}
	return dir, nil
}

func (a *Agent) writeCert(path string, data []byte) error {
	if a.users == nil {
		return os.WriteFile(path, data, 0o600)
	}
	if err := os.WriteFile(path, data, 0o640); err != nil {
		return err
	}
	return os.Chown(path, 0, a.users.group())
}

// removeCerts deletes the certificates (unmounting their tmpfs frees the
// memory that held them).
func (a *Agent) removeCerts() {
	dir := a.cfg.certificatesDir()
	for syscall.Unmount(dir, syscall.MNT_DETACH) == nil {
	}
	_ = os.RemoveAll(dir)
}

// wipeTaskFiles deletes every task's files from the node: the account's
// data leaves the node when its key becomes inaccessible or the node leaves
// its pool.
func (a *Agent) wipeTaskFiles() {
	for _, d := range []string{"workitems", "startup", "shared"} {
		if err := os.RemoveAll(filepath.Join(a.cfg.Root, d)); err != nil {
			a.log.Warn("node: delete task files", "dir", d, "err", err)
		}
	}
}

// disown gives every file under dir to root, without following links.
func disown(dir string) {
	filepath.WalkDir(dir, func(p string, _ os.DirEntry, err error) error {
		if err == nil {
			_ = os.Lchown(p, 0, 0)
		}
		return nil
	})
}
