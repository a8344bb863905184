// Package sandbox runs a task's processes apart from everything else on the
// host, with Linux's own mechanisms, so that hostile task code cannot reach
// the server, the node agent, or other pools' and accounts' files and
// processes, nor take more of the machine than its pool's size allows.
//
// Each task gets, at its creation (one clone, no window in between):
//
//   - a user namespace in which the task's user is an unprivileged host user
//     of its own (per pool, or per task for autoUser scope task) and, for
//     elevationLevel admin, root of that namespace only: it holds no
//     capability over any host file it does not own;
//   - a mount namespace whose root is a read-only tmpfs holding read-only
//     binds of the system directories (/usr, /bin, /lib, /etc, ...) and a
//     minimal read-only /dev, all prepared once per node and locked in the
//     task's namespace (not even root of its user namespace can make them
//     writable or unmount them), plus the node's root directory
//     (read-write), a private /tmp, /dev/shm and a /proc of its own; the old
//     root is detached, so the server's data directory, the agent's state
//     and other nodes' directories do not exist for it;
//   - a PID namespace: the task's shell is PID 1, it sees no other process,
//     and when it exits the kernel kills every process left in the
//     namespace (setsid and double forks included);
//   - IPC and UTS namespaces (the node id as host name);
//   - control groups (cgroup v2 where the host has it; v1 pids, memory, cpu
//     and freezer hierarchies where it does not, with a cgroup2 hierarchy
//     without controllers used for cgroup.kill), one per node and one per
//     task beneath it, holding the limits of the pool's vmSize;
//   - RLIMIT_FSIZE at the task's disk budget, no core dumps, no_new_privs.
//
// All of it is done by a small init written in C (init.c), linked into the
// custody binary as a constructor, so it runs before the Go runtime would
// start. Each node has a zygote: that C code started once as /proc/self/exe
// in a mount namespace of its own, where it prepares the part of every
// task's root that is the same for all (the root tmpfs, /dev, the system
// directories, the directories the node's binds go on) and makes it
// read-only. For each task the agent sends the zygote the init's
// descriptors, command line and environment over a socket; the zygote
// clones the init as the agent's own child (CLONE_PARENT, and
// CLONE_INTO_CGROUP on cgroup v2), so a task costs a fork of a small
// process, not an execve of the custody binary, and its root one recursive
// bind of the prepared tree (its namespace copy locks the tree's mounts),
// not some thirty mounts. The init makes the namespaces and waits until the
// agent has written its user namespace's id maps before it does anything
// else.
//
// The sandbox needs root (to map task users and to create control groups),
// cgo, user, mount and PID namespaces, and writable pids, memory and cpu
// controllers; Probe says which of these is missing.
package sandbox
