// Package node is Custody's node agent: the process (`custody node`) that
// joins a pool, heartbeats, takes task assignments over HTTPS from the
// server and runs each task as an OS process, then reports back.
//
// Each task runs through /bin/sh -c as the leader of its own process group
// (Setpgid), with Pdeathsig so it dies with the agent, in its own directory
// under the node's root, laid out as Azure Batch lays it out:
//
//	{root}/workitems/{job}/job-1/{task}/wd          working directory
//	{root}/workitems/{job}/job-1/{task}/stdout.txt
//	{root}/workitems/{job}/job-1/{task}/stderr.txt
//	{root}/startup/                                 the pool's start task
//	{root}.certs/                                   the pool's certificates (AgentConfig.CertificatesDir)
//
// The certificates directory lies outside the node root, so that the file
// API, which serves nothing outside the node root (node files) or the
// task's directory (task files), cannot reach it; see files.go.
//
// Killing a task (terminate, maxWallClockTime, the account's key being
// lost, node removal) kills the whole tree with kill(-pgid, SIGKILL). The
// agent is a child subreaper (PR_SET_CHILD_SUBREAPER) and reaps orphaned
// descendants, because PID 1 may not.
//
// The agent kills every run before it joins again (told to rejoin or
// reboot), and also when it has not reached the server for three quarters of
// the time after which the server declares the node lost; it then joins
// again as soon as it can. A task the server requeues elsewhere is therefore
// dead on this node first.
//
// Customer data (command lines, environment settings, certificates) reaches
// the agent only over TLS and is held in memory; the only things written to
// the node's disk are a task's own files.
package node
