package node

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"custody/node/sandbox"
)

// Task users. Each agent takes a range of host user and group ids of its
// own (RangeSize ids from DefaultUIDBase + k*RangeSize, k the first range no
// other live agent on the host holds: a lock file under the host's run
// directory, held with flock for the agent's life). Within its range:
//
//	base+0               root of the tasks' user namespaces (elevationLevel admin)
//	base+1               the pool's auto-user (scope pool) and the pool's group
//	base+2+2i, base+3+2i admin and user of the i-th task with an auto-user of scope task
//	base+32768+j         the pool's j-th named user account
//
// A node belongs to one pool, so these are the pool's own users: no other
// pool's or account's task ever has them.
const (
	DefaultUIDBase = 10_000_000
	RangeSize      = 65536
	taskUsers      = 16000
	namedUsers     = 32768
)

// uidRange is the agent's range of host ids.
type uidRange struct {
	base int
	lock *os.File
	name string

	next int // next task-scope slot to try
	used map[int]bool
}

// lockDir is where agents take their id ranges.
func lockDir() string {
	if st, err := os.Stat("/run"); err == nil && st.IsDir() {
		return "/run/custody/uid-ranges"
	}
	return filepath.Join(os.TempDir(), "custody-uid-ranges")
}

// takeRange takes the first free range from base (flock on a lock file per
// range; released by the kernel when the agent dies).
func takeRange(base int) (*uidRange, error) {
	dir := lockDir()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("node: user id ranges: %w", err)
	}
	for k := 0; k < 4096; k++ {
		b := base + k*RangeSize
		if b+RangeSize > 1<<31 {
			break
		}
		f, err := os.OpenFile(filepath.Join(dir, strconv.Itoa(b)), os.O_CREATE|os.O_RDWR, 0o600)
		if err != nil {
			return nil, fmt.Errorf("node: user id ranges: %w", err)
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			f.Close()
			continue
		}
		return &uidRange{base: b, lock: f, name: "r" + strconv.Itoa(b), used: map[int]bool{}}, nil
	}
	return nil, errors.New("node: no free range of task user ids (too many agents on this host)")
}

func (u *uidRange) close() {
	if u != nil && u.lock != nil {
		u.lock.Close()
	}
}

func (u *uidRange) poolAdmin() int { return u.base }
func (u *uidRange) poolUser() int  { return u.base + 1 }
func (u *uidRange) group() int     { return u.base + 1 }

// taskSlot takes a pair of ids for a task-scope auto-user; release it when
// the run ends.
func (u *uidRange) taskSlot() (int, bool) {
	for i := 0; i < taskUsers; i++ {
		s := (u.next + i) % taskUsers
		if !u.used[s] {
			u.used[s] = true
			u.next = s + 1
			return s, true
		}
	}
	return 0, false
}

func (u *uidRange) releaseSlot(s int) { delete(u.used, s) }

// runUser resolves a run's userIdentity to host ids: (admin uid, uid, gid,
// admin?, task slot or -1).
func (a *Agent) runUser(id *UserIdentity, accounts []UserAccount) (sandbox.Task, int, error) {
	u := a.users
	t := sandbox.Task{AdminUID: u.poolAdmin(), UID: u.poolUser(), GID: u.group()}
	slot := -1
	switch {
	case id == nil || (id.UserName == "" && id.AutoUser == nil):
	case id.UserName != "":
		for j, acc := range accounts {
			if acc.Name == id.UserName {
				t.UID = u.base + namedUsers + j
				t.Admin = strings.EqualFold(acc.ElevationLevel, "admin")
				return t, -1, nil
			}
		}
		return t, -1, fmt.Errorf("the pool has no user account named %q", id.UserName)
	default:
		t.Admin = strings.EqualFold(id.AutoUser.ElevationLevel, "admin")
		if strings.EqualFold(id.AutoUser.Scope, "task") {
			s, ok := u.taskSlot()
			if !ok {
				return t, -1, errors.New("no free task user on this node")
			}
			slot = s
			t.AdminUID, t.UID = u.base+2+2*s, u.base+3+2*s
		}
	}
	return t, slot, nil
}
