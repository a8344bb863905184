// Package compute is the compute half of the batch service: pools, the
// compute nodes that make them up, the node channel agents talk to, and the
// scheduler that places tasks on free task slots.
//
// A pool's customer-written fields (display name, start task, metadata,
// image) are sealed with the account's DEK like jobs and tasks; node state
// lives in the server's memory. By default the server starts the nodes a
// pool asks for as local `custody node` processes (a Launcher); agents on
// other machines join with a node credential instead.
//
// Local nodes. By default the server starts the nodes a pool asks for as
// child processes ({custody executable} node --server
// https://batch.{domain}:{port} --connect {listen address} --credential-fd 3
// --ca-fd 4 --root {node-root}/{account}/{pool}/{node}), each in a mount
// namespace of its own, with the node credential and the CA certificate
// written to inherited pipes: never on the command line, in the
// environment, or in a file a task could read. The node root
// (--node-root, default {data-dir}-nodes beside the data directory) may not
// contain, or be inside, the data directory. Every task runs in a sandbox
// (package node/sandbox); a host that cannot build one refuses local nodes
// at start unless --unsafe-shared-host-nodes is given, which the server
// then says on its terminal and in /healthz. The node's budget (CPUs,
// memory, processes, disk per task) comes from the pool's vmSize and is
// sent at join (JoinResponse.Limits; see VMSize).
// server.Config.DisableLocalNodes turns this off so agents on other machines
// join instead: an admin asks for a node credential with POST
// /pools/{pool}/nodecredentials on the account's data plane (a Custody
// extension; the credential is shown once) and runs custody node --server
// https://batch.{domain}:{port} --credential-file ... --ca-file ... --root
// ... there. Credentials are kept only as SHA-256 hashes, stored with their
// account, pool and node (compute_nodes), so after a restart (or a loss)
// such a node waits offline until its agent syncs and is told to join again;
// removing the node, its pool or its account deletes them.
//
// Restarts, failovers and lost agents. A task's record names the node it
// runs on (node_id, migration 00006). At start-up (compute.Service.recover,
// before any scheduling), on a restarted server or a replica that became the
// active one, tasks left running on local nodes are requeued at once (those
// agents died with the server, Pdeathsig); tasks left running on a stored
// remote node stay running, and off the scheduler, until that node's agent
// syncs. Every sync names the node the agent joined and the runs it holds
// (running, or ended with the report not yet acknowledged), so the agent
// resumes its node (Service.resume): the runs of those tasks it still holds
// are taken back as they are (they run on; their reports, refused with 503
// until the node resumed, then count), the tasks it does not hold are
// requeued, once, and runs it holds that the record does not give the node
// are killed. A node that cannot resume (its account locked, its start task
// running, an agent that names no node) is told to join again: the agent
// kills all its runs first, and the held tasks are requeued, once; so are
// they when the agent has not synced for the lost timeout. An
// agent that has not reached the server for three quarters of the lost
// timeout (sent at join as lostAfterMillis) kills its runs without reporting
// them and joins again once it can, so by the time the server declares a
// node lost and requeues its tasks elsewhere, they are dead there: no task
// runs twice at once.
//
// The node channel is HTTPS on the host batch.{domain} (already covered by
// the server certificate), authenticated with Authorization: CustodyNode
// {credential}:
//
//	call                   what
//	POST /node/v1/join     the agent's first call (version, host name); the server queues the pool's start task
//	POST /node/v1/sync     long poll and heartbeat: returns at once with new runs (command line and environment, unsealed), runs to kill, file requests, a new configuration (certificates, identities), or "drop"/"leave"/"reboot"; otherwise after the poll interval
//	POST /node/v1/report   runs that ended (exit code, start and end time, timed out, killed), as many as ended since the last report; sent on its own request so a long poll in flight is never cancelled
//	POST /node/v1/token    a managed identity token for a task, for one of the pool's user-assigned identities only
//	POST /node/v1/files    the agent's reply to a file request: a FileReply header and the bytes
//
// Node and task files (list, read, properties, delete) travel over the same
// channel: the server never connects to the node, nor to any address an
// agent (or anyone holding a node credential) names. Service.NodeFile and
// Service.TaskFile queue a file request for the node with a random id and
// wake its long poll; the agent answers on its own POST /node/v1/files with
// its node credential; the server takes the reply only for a request it
// sent to that very node, copies at most the length the reply declares
// (listings at most 16 MiB), and answers 503 NodeNotReachable when no reply
// begins within FileWait (20 s). So remote agents need no inbound port, and
// a node credential gives no way to make the server fetch anything.
//
// Customer data reaches the agent only over this TLS channel and stays in
// its memory; on disk there are only the tasks' own files
// ({root}/workitems/{job}/job-1/{task}/{wd,stdout.txt,stderr.txt},
// {root}/startup/..., {root}/shared), which the agent deletes when it is
// told to drop the account's data or leave the pool, and the pool's
// certificates, in a tmpfs (memory) outside the node root that the agent
// unmounts then (see the node package documentation). The node and task file APIs serve only
// what lies beneath the node root or the task's directory: links that lead
// out are refused (403 FileAccessDenied), listings do not follow links, and
// certificate files are never served. Tasks get AZ_BATCH_*
// variables; on a pool with a user-assigned identity also
// IDENTITY_ENDPOINT/IDENTITY_HEADER pointing at the agent's
// App-Service-style endpoint (http://127.0.0.1:{port}/msi/token), which
// checks X-IDENTITY-HEADER and asks the server over the node channel. The
// account's own identity is never available on nodes.
//
// Scheduling. compute.Service.Run wakes on task adds, run reports and a 250
// ms tick: it keeps pools at their target node counts, declares nodes lost
// after three missed polls (or at once when a local agent process exits) and
// requeues their tasks, and places runnable tasks (BatchTasks.Runnable:
// active jobs of the pool, highest priority first, equal priorities by
// creation time then id; active tasks, dependencies met; no more of a job
// than its maxParallelTasks leaves beside its running tasks) on free slots
// with compute.Place (spread or pack, requiredSlots). Changes of a job's
// priority or maxParallelTasks apply from the next pass. Failed runs are
// retried up to maxTaskRetryCount; onAllTasksComplete: terminatejob ends the
// job; terminate and delete kill the task's process tree on its node.
//
// Job tasks (jobtasks.go). A job's manager task is a task of the job:
// Runnable offers it alone while it is active, Place gives it a node with
// nothing running and all of its slots (runExclusive) and keeps it off
// low-priority nodes unless allowLowPriorityNode; its completion
// terminates the job (killJobOnCompletion, JMComplete). The first time a
// node gets a task of a job with a preparation task, the node's entry for
// the job (liveNode.jobs, in memory like the rest of the node) queues it as
// a run of kind jobprep, outside the task slots; with waitForSuccess the
// task is started in state preparing and kept on the server (run.waiting,
// never sent) until the preparation task ended: then it runs (Started), or
// goes back to active while the job's tasks are kept off the node
// (Candidate.Exclude). batch.DataService.OnJobEnd (terminate, completion,
// delete) hands the job's spec to Service.JobEnded, which builds the release
// run for every node that ran the preparation task and sends it once the
// job's runs there have ended; a terminated job waits in state terminating
// (DataService.ReleasePending) until no release is left to run, then
// Config.JobReleased completes it (also when the node leaves, rejoins or
// drops its files, and at start-up for jobs a previous process left
// terminating). A completed task's exit conditions
// (batch.ExitDispositionOf) decide its dependents (DepFailed for block) and,
// with onTaskFailure performexitoptionsjobaction, its job's action.
//
// Pipeline. The tasks a pass places start in one transaction
// (Tasks.StartTasks: each job read and opened once), and the runs of one
// report end in one (Tasks.FinishTasks; a task that changed meanwhile is
// written again on its own), through batch.DataStore.UpdateTasks. An agent
// reports whatever ended while its previous report was in flight together,
// and a report never waits for a sync. An agent that says at join it queues
// runs (queueRuns) gets the node's taskSlotsPerNode and holds runs beyond
// its free slots in order, starting each the moment a slot frees; while a
// run shorter than DispatchAheadWindow (100 ms) ended on a node within the
// last DispatchAheadWindow, the scheduler dispatches ahead: up to
// DispatchAhead (2) runs per slot. So between two short tasks a slot does
// not wait for a report, a pass and a sync, and behind long tasks nothing is
// queued (job priorities decide when a slot frees; a queued run delays a
// later task of a higher priority by about one short task at most). A run
// held in the agent's queue counts as running (its task is running from
// dispatch; its startTime is set when it really starts), is among the runs
// the agent holds for a server that takes over, and is killed by
// terminate, delete or a lost node like a running one: the agent drops it
// and reports it killed, never started; a run not yet sent is dropped from
// the node's outbox. The node's runningTasksCount and runningTaskSlotsCount
// count at most its slots.
//
// Run outcomes. The outcome of a task's last run (exit code, result, failure
// code, pool and node, last retry and requeue times) is stored in
// batch_tasks with the task (migration 00006) and written by the same update
// that moves its state, so a restarted server still reports it, the job's
// task counts split succeeded from failed, and a failed dependency keeps
// blocking. These are service-generated values, kept plain; the failure
// message can quote the command (a program that could not be started), so it
// is sealed with the account's DEK, bound to its task.
//
// vmSize names map to a CPU count and memory budget (compute.LookupVMSize);
// taskSlotsPerNode defaults to 1 and may be up to 4 x CPUs (at most 256),
// for example standard_a1_v2 1 CPU, standard_d2s_v3 2 CPUs, standard_d4s_v3
// 4, standard_d8s_v3 8, standard_f8s_v2 8.
//
// Key loss. batch.Service tells its KeyObservers when an account locks or
// unlocks (the compute service also checks the key state of every pool's
// account each reconcile pass). On lock every node of the account becomes
// unusable, its runs are requeued (requeueCount+1) and the agents are told
// to drop: they kill every process tree, forget the pool's configuration and
// delete its certificates, but keep running and syncing. Nothing starts
// while locked. On unlock the nodes return to idle, get their configuration
// again, and the requeued tasks run.
package compute
