package sandbox

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// v1Controllers are the cgroup v1 hierarchies a task is placed in when the
// host has no cgroup v2 controllers.
var v1Controllers = []string{"pids", "memory", "cpu", "freezer"}

// cgroupHost is where the host's control group hierarchies are mounted.
type cgroupHost struct {
	// v2 is the cgroup2 mount point ("" if none).
	v2 string
	// v2Limits is set when the cgroup2 hierarchy has the pids, memory and
	// cpu controllers (a pure v2 host); otherwise v1 holds them and v2, if
	// present, serves only to kill (cgroup.kill).
	v2Limits bool
	// v1 maps a v1 controller to its mount point.
	v1 map[string]string
}

// detectCgroups reads /proc/self/mountinfo.
func detectCgroups() (cgroupHost, error) {
	h := cgroupHost{v1: map[string]string{}}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return h, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		sep := -1
		for i, f := range fields {
			if f == "-" {
				sep = i
				break
			}
		}
		if sep < 5 || sep+3 > len(fields) {
			continue
		}
		mnt := unescapeMount(fields[4])
		switch fields[sep+1] {
		case "cgroup2":
			if h.v2 == "" {
				h.v2 = mnt
			}
		case "cgroup":
			for _, opt := range strings.Split(fields[sep+3], ",") {
				for _, c := range v1Controllers {
					if opt == c {
						if _, dup := h.v1[c]; !dup {
							h.v1[c] = mnt
						}
					}
				}
			}
		}
	}
	if h.v2 != "" {
		b, _ := os.ReadFile(filepath.Join(h.v2, "cgroup.controllers"))
		have := strings.Fields(string(b))
		h.v2Limits = contains(have, "pids") && contains(have, "memory") && contains(have, "cpu")
	}
	if !h.v2Limits {
		var missing []string
		for _, c := range []string{"pids", "memory", "cpu"} {
			if h.v1[c] == "" {
				missing = append(missing, c)
			}
		}
		if len(missing) > 0 {
			return h, fmt.Errorf("no pids, memory and cpu control groups: the cgroup2 hierarchy has none of them and there is no cgroup v1 hierarchy for %s", strings.Join(missing, ", "))
		}
	}
	return h, sc.Err()
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// cgroup is one control group in every hierarchy the sandbox uses.
type cgroup struct {
	host *cgroupHost
	// rel is the path below each hierarchy's mount point.
	rel string
}

func (h *cgroupHost) dirs(rel string) []string {
	var out []string
	if h.v2 != "" {
		out = append(out, filepath.Join(h.v2, rel))
	}
	if !h.v2Limits {
		for _, c := range v1Controllers {
			if m := h.v1[c]; m != "" {
				out = append(out, filepath.Join(m, rel))
			}
		}
	}
	return out
}

// create makes the group (and its parents) in every hierarchy and sets
// limits on it.
func (h *cgroupHost) create(rel string, l Limits) (*cgroup, error) {
	if h.v2Limits {
		// Controllers must be enabled in every ancestor's subtree_control.
		parts := strings.Split(rel, "/")
		for i := range parts {
			dir := filepath.Join(h.v2, filepath.Join(parts[:i]...))
			_ = os.WriteFile(filepath.Join(dir, "cgroup.subtree_control"), []byte("+pids +memory +cpu"), 0)
		}
	}
	for _, d := range h.dirs(rel) {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("create control group: %w", err)
		}
	}
	g := &cgroup{host: h, rel: rel}
	if err := g.setLimits(l); err != nil {
		g.remove()
		return nil, err
	}
	return g, nil
}

func (g *cgroup) write(dir, file, value string) error {
	if err := os.WriteFile(filepath.Join(dir, file), []byte(value), 0); err != nil {
		return fmt.Errorf("control group %s: %w", file, err)
	}
	return nil
}

func (g *cgroup) setLimits(l Limits) error {
	h := g.host
	period := 100000
	if h.v2Limits {
		d := filepath.Join(h.v2, g.rel)
		if err := g.write(d, "pids.max", strconv.FormatInt(l.Pids, 10)); err != nil {
			return err
		}
		if err := g.write(d, "memory.max", strconv.FormatInt(l.MemoryBytes, 10)); err != nil {
			return err
		}
		_ = g.write(d, "memory.swap.max", "0")
		return g.write(d, "cpu.max", fmt.Sprintf("%d %d", l.CPUs*period, period))
	}
	if err := g.write(filepath.Join(h.v1["pids"], g.rel), "pids.max", strconv.FormatInt(l.Pids, 10)); err != nil {
		return err
	}
	mem := filepath.Join(h.v1["memory"], g.rel)
	if err := g.write(mem, "memory.limit_in_bytes", strconv.FormatInt(l.MemoryBytes, 10)); err != nil {
		return err
	}
	// Memory plus swap, where the kernel accounts swap: no way around the
	// memory limit through swap.
	_ = g.write(mem, "memory.memsw.limit_in_bytes", strconv.FormatInt(l.MemoryBytes, 10))
	cpu := filepath.Join(h.v1["cpu"], g.rel)
	if err := g.write(cpu, "cpu.cfs_period_us", strconv.Itoa(period)); err != nil {
		return err
	}
	return g.write(cpu, "cpu.cfs_quota_us", strconv.Itoa(l.CPUs*period))
}

// openV2 opens the group's cgroup2 directory for clone3's CLONE_INTO_CGROUP
// (-1 if there is no cgroup2 hierarchy).
func (g *cgroup) openV2() (int, error) {
	if g.host.v2 == "" {
		return -1, nil
	}
	fd, err := syscall.Open(filepath.Join(g.host.v2, g.rel), syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("open control group: %w", err)
	}
	return fd, nil
}

// joinV1 moves process pid (all its threads) into the group's v1
// hierarchies.
func (g *cgroup) joinV1(pid int) error {
	p := strconv.Itoa(pid)
	for _, c := range v1Controllers {
		if m := g.host.v1[c]; m != "" {
			if err := g.write(filepath.Join(m, g.rel), "cgroup.procs", p); err != nil {
				return err
			}
		}
	}
	return nil
}

// leaveV1 moves process pid back to the root of the v1 hierarchies.
func (g *cgroup) leaveV1(pid int) {
	p := strconv.Itoa(pid)
	for _, c := range v1Controllers {
		if m := g.host.v1[c]; m != "" {
			_ = g.write(m, "cgroup.procs", p)
		}
	}
}

// kill kills every process in the group: cgroup.kill where the kernel has
// it, else SIGKILL to each process listed.
func (g *cgroup) kill() {
	if g.host.v2 != "" {
		if os.WriteFile(filepath.Join(g.host.v2, g.rel, "cgroup.kill"), []byte("1"), 0) == nil {
			return
		}
	}
	for _, d := range g.host.dirs(g.rel) {
		b, err := os.ReadFile(filepath.Join(d, "cgroup.procs"))
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil && pid > 0 {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
}

// oomKills returns how many processes of the group the kernel's OOM killer
// killed because of its memory limit.
func (g *cgroup) oomKills() int64 {
	var file string
	if g.host.v2Limits {
		file = filepath.Join(g.host.v2, g.rel, "memory.events")
	} else {
		file = filepath.Join(g.host.v1["memory"], g.rel, "memory.oom_control")
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 2 && f[0] == "oom_kill" {
			n, _ := strconv.ParseInt(f[1], 10, 64)
			return n
		}
	}
	return 0
}

// remove kills what is left in the group and removes it from every
// hierarchy (children first; rmdir is retried while the last processes
// are being reaped).
func (g *cgroup) remove() error {
	g.kill()
	var errs []error
	for _, d := range g.host.dirs(g.rel) {
		var err error
		for i := 0; i < 50; i++ {
			err = syscall.Rmdir(d)
			if err == nil || errors.Is(err, syscall.ENOENT) {
				err = nil
				break
			}
			if !errors.Is(err, syscall.EBUSY) {
				break
			}
			time.Sleep(2 * time.Millisecond)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("remove control group %s: %w", d, err))
		}
	}
	return errors.Join(errs...)
}

// removeTree removes a group and everything below it (a node's groups left
// behind by an agent that died), killing what runs there.
func (h *cgroupHost) removeTree(rel string) {
	for _, d := range h.dirs(rel) {
		entries, err := os.ReadDir(d)
		if err != nil {
			continue
		}
		for _, e := range entries {
			if e.IsDir() {
				h.removeTree(filepath.Join(rel, e.Name()))
			}
		}
	}
	(&cgroup{host: h, rel: rel}).remove()
}
