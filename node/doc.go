// Package node is Custody's node agent: the process (`custody node`) that
// joins a pool, heartbeats, takes task assignments over HTTPS from the
// server and runs each task as an OS process, then reports back.
//
// Each task runs through /bin/sh -c in a sandbox of its own (package
// sandbox: user, mount, PID, IPC and UTS namespaces, control groups with
// the limits of the pool's vmSize, a disk budget), as the user its
// userIdentity names, in its own directory under the node's root, laid out
// as Azure Batch lays it out:
//
//	{root}/workitems/{job}/job-1/{task}/wd          working directory
//	{root}/workitems/{job}/job-1/{task}/stdout.txt
//	{root}/workitems/{job}/job-1/{task}/stderr.txt
//	{root}/startup/                                 the pool's start task
//	{root}/shared/                                  AZ_BATCH_NODE_SHARED_DIR
//	{root}.certs/                                   the pool's certificates (AgentConfig.CertificatesDir)
//
// The certificates directory lies outside the node root, so that the file
// API, which serves nothing outside the node root (node files) or the
// task's directory (task files), cannot reach it; see files.go. With the
// sandbox it is a tmpfs of its own (16 MiB, memory only), owned by root and
// readable by the pool's group; tasks see it read-only.
//
// Users (users.go). Each agent takes a range of 65536 host user ids that no
// other live agent on the host holds. The pool's auto-user (scope pool,
// Azure's default) is one user; each running task with an auto-user of
// scope task gets one of its own; the pool's userAccounts get one each.
// elevationLevel admin makes the task root of its own user namespace, which
// is a host user with no privilege over anything it does not own. A task's
// directory belongs to its user (mode 0700).
//
// Killing a task (terminate, maxWallClockTime, the disk budget, the
// account's key being lost, node removal, the agent's death) kills PID 1 of
// its namespace, and the kernel kills every other process in it; the
// task's control group is killed too. Without the sandbox
// (--unsafe-shared-host), a task is a process group killed with
// kill(-pgid, SIGKILL). The agent is a child subreaper
// (PR_SET_CHILD_SUBREAPER) and reaps orphaned descendants, because PID 1
// may not.
//
// The agent kills every run before it joins again (told to rejoin or
// reboot), and also when it has not reached the server for three quarters of
// the time after which the server declares the node lost; it then joins
// again as soon as it can. A task the server requeues elsewhere is therefore
// dead on this node first. A server that took over from another (a new
// active replica, or a restart) is told in each sync which node the agent
// joined and which runs it holds, running or ended with the report not yet
// acknowledged: it resumes the node, and the runs it has on record there go
// on (see the compute package). The agent drops a connection that stays
// silent through a ping, and bounds TLS handshakes, so a server that froze
// does not hold it.
//
// Customer data on a node. Command lines, environment settings, the pool's
// user accounts and certificates reach the agent only over TLS and are held
// in its memory while it runs the pool's tasks. On the node's disk: each
// task's working directory, stdout.txt and stderr.txt (what the task
// writes; kept until the job is deleted or the node drops the account's
// data), and the certificates in their tmpfs (memory). When the account's
// key becomes inaccessible (sync answer drop) the agent kills every run,
// forgets the configuration, unmounts the certificate tmpfs and deletes
// every task's files; when the node leaves its pool it does the same and
// the server deletes the node's directory when the agent exits.
package node
