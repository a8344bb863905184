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
//   - a mount namespace whose root is an empty tmpfs holding read-only binds
//     of the system directories (/usr, /bin, /lib, /etc, ...), the node's
//     root directory (read-write), a minimal /dev, a private /tmp and a /proc
//     of its own; the old root is detached, so the server's data directory,
//     the agent's state and other nodes' directories do not exist for it;
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
// The namespaces are made by the agent's clone; the rest is done by a small
// init written in C (init.c), linked into the custody binary as a
// constructor and started as /proc/self/exe, so a sandboxed task costs one
// execve more than a plain one rather than the start-up of the Go runtime.
// It waits until the agent has placed it in its control groups before it
// does anything else.
//
// The sandbox needs root (to map task users and to create control groups),
// cgo, user, mount and PID namespaces, and writable pids, memory and cpu
// controllers; Probe says which of these is missing.
package sandbox
