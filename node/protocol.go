package node

import "time"

// The node protocol: an agent talks to the server over HTTPS on the host
// batch.{domain}, authenticated by its node credential
// ("Authorization: CustodyNode {credential}"):
//
//	POST /node/v1/join    JoinRequest   -> JoinResponse
//	POST /node/v1/sync    SyncRequest   -> SyncResponse   (long poll; also the heartbeat)
//	POST /node/v1/report  ReportRequest -> 204            (runs that finished)
//	POST /node/v1/token   TokenRequest  -> TokenResponse  (managed identity tokens for tasks)
//	POST /node/v1/files   (FileReply in the Custody-File-Reply header, the file's bytes as body) -> 204
//
// Sync returns at once when the server has something for the node (new
// runs, runs to kill, file requests, a state change), or after the poll
// interval. Each sync names the runs the agent holds, so a server that took
// over (another replica, or a restart) resumes the node and its runs where
// the former left them. Finished runs are reported on their own request as soon as they
// end, so a long poll in flight is never cancelled (its answer may carry new
// runs); runs that end while a report is in flight go together in the next
// one. The server dispatches ahead: besides a run for each free slot it
// sends up to as many more, which the agent holds in order and starts the
// moment a slot frees, so a slot never waits for a report, a scheduling
// pass and a sync before its next run. A kill of a held run drops it (it is
// reported killed, never started). A node that has not synced for a few intervals is lost: its runs
// are requeued elsewhere. So that they never run twice at once, an agent
// that has not reached the server for most of that time kills its runs
// itself, and joins again once it can.
//
// Node and task files travel over this channel too, never over a
// connection the server opens: the server never fetches a URL an agent (or
// anyone holding a node credential) names. A file request (list, read,
// properties or delete) reaches the agent as a FileRequest in a sync
// answer, which the server sends at once by waking the node's long poll;
// the agent answers with its own POST /node/v1/files, authenticated by its
// node credential like every other call, carrying a FileReply and the
// bytes. The server matches the reply to a request it issued to that very
// node (a random id, usable once), copies at most the length the reply
// declares (listings at most 16 MiB), and answers 503 NodeNotReachable when
// no reply comes in time. What the agent serves is confined to the node
// root or the task's directory (see files.go).
//
// On its own loopback listener the agent serves only the App Service-style
// managed identity endpoint to its tasks (GET /msi/token with
// X-IDENTITY-HEADER).

// CredentialScheme is the Authorization scheme of node credentials.
const CredentialScheme = "CustodyNode"

// JoinRequest is sent once when an agent starts.
type JoinRequest struct {
	AgentVersion string `json:"agentVersion"`
	Root         string `json:"root"`
	Hostname     string `json:"hostname"`
	// QueueRuns says the agent holds runs beyond its free task slots and
	// starts each, in order, the moment a slot frees: the server then
	// dispatches ahead (up to twice the node's slots).
	QueueRuns bool `json:"queueRuns,omitempty"`
}

// JoinResponse tells the agent who it is.
type JoinResponse struct {
	NodeID  string `json:"nodeId"`
	PoolID  string `json:"poolId"`
	Account string `json:"account"`
	// PollSeconds is how long a sync may be held by the server.
	PollSeconds int `json:"pollSeconds"`
	// LostAfterMillis is how long the server waits for a sync before it
	// declares the node lost and requeues its runs elsewhere (0: three
	// polls and 5 seconds). An agent that has not reached the server for
	// three quarters of it kills its runs first (see Agent.Run).
	LostAfterMillis int64 `json:"lostAfterMillis,omitempty"`
	// Limits is the node's budget, from the pool's vmSize: the agent puts
	// it on the node's control group and on each task's.
	Limits NodeLimits `json:"limits"`
	// TaskSlots is the node's taskSlotsPerNode: an agent that queues runs
	// runs at most this many slots' worth of tasks at once (0: no bound).
	TaskSlots int `json:"taskSlots,omitempty"`
}

// NodeLimits is what a node, and each task on it, may use of the machine.
type NodeLimits struct {
	CPUs        int   `json:"cpus"`
	MemoryBytes int64 `json:"memoryBytes"`
	// Pids bounds the processes and threads of the node and of each task.
	Pids int64 `json:"pids"`
	// DiskBytes bounds each task's files (working directory, stdout and
	// stderr).
	DiskBytes int64 `json:"diskBytes"`
}

// RunReport is the outcome of a run on the node.
type RunReport struct {
	RunID      string    `json:"runId"`
	ExitCode   int       `json:"exitCode"`
	StartTime  time.Time `json:"startTime"`
	EndTime    time.Time `json:"endTime"`
	TimedOut   bool      `json:"timedOut,omitempty"`
	Killed     bool      `json:"killed,omitempty"`
	StartError string    `json:"startError,omitempty"`
	// DiskExceeded: the run's files outgrew the disk budget and it was
	// killed. OOMKilled: the kernel killed one of its processes for
	// exceeding the memory limit.
	DiskExceeded bool `json:"diskExceeded,omitempty"`
	OOMKilled    bool `json:"oomKilled,omitempty"`
}

// Failed reports whether the run counts as failed.
func (r RunReport) Failed() bool {
	return r.StartError != "" || r.TimedOut || r.ExitCode != 0 || r.DiskExceeded || r.OOMKilled
}

// SyncRequest is the agent's periodic report.
type SyncRequest struct {
	// Running lists the runs the agent is running now.
	Running []string `json:"running"`
	// HaveConfig is the config generation the agent holds (0: none).
	HaveConfig int64 `json:"haveConfig"`
	// NodeID is the node the agent joined as ("" before it has joined).
	NodeID string `json:"nodeId,omitempty"`
	// Runs are the runs the agent holds: those running and those that
	// ended and whose report the server has not acknowledged yet. A server
	// that took over from another (a new active replica, a restart) resumes
	// the node from them instead of making it join again: it takes back the
	// task runs it has on record for the node, so they neither stop nor run
	// twice (see Resume in the compute package).
	Runs []RunState `json:"runs,omitempty"`
}

// RunState is a run the agent holds.
type RunState struct {
	RunID  string `json:"runId"`
	Kind   string `json:"kind"`
	JobID  string `json:"jobId,omitempty"`
	TaskID string `json:"taskId,omitempty"`
	// Ended says the run has ended and its report is on its way.
	Ended bool `json:"ended,omitempty"`
}

// ReportRequest carries runs that ended.
type ReportRequest struct {
	Finished []RunReport `json:"finished"`
}

// Kinds of runs besides "task" and "starttask": a job's preparation and
// release tasks, which run in the job's directory like its tasks.
const (
	KindJobPreparation = "jobprep"
	KindJobRelease     = "jobrelease"
)

// Run is a process the server asks the node to run.
type Run struct {
	RunID string `json:"runId"`
	// Kind is "task", "starttask", KindJobPreparation or KindJobRelease
	// (these two start at once, outside the slots).
	Kind   string `json:"kind"`
	JobID  string `json:"jobId,omitempty"`
	TaskID string `json:"taskId,omitempty"`
	// Slots is the task's requiredSlots (0: 1).
	Slots       int               `json:"slots,omitempty"`
	CommandLine string            `json:"commandLine"`
	Env         map[string]string `json:"env,omitempty"`
	// MaxWallClockMillis is 0 for unlimited.
	MaxWallClockMillis int64 `json:"maxWallClockMillis,omitempty"`
	// UserIdentity is the user the run runs as (nil: the pool's non-admin
	// auto-user, Azure's default).
	UserIdentity *UserIdentity `json:"userIdentity,omitempty"`
	// JobPrepTaskID names the job's preparation task, if it has one: a
	// task gets its directories as AZ_BATCH_JOB_PREP_DIR and
	// AZ_BATCH_JOB_PREP_WORKING_DIR.
	JobPrepTaskID string `json:"jobPrepTaskId,omitempty"`
}

// UserIdentity is Azure Batch's userIdentity: a named user account of the
// pool, or an auto-user.
type UserIdentity struct {
	UserName string    `json:"username,omitempty"`
	AutoUser *AutoUser `json:"autoUser,omitempty"`
}

// AutoUser is an auto-user: scope "pool" (one user shared by the pool's
// tasks) or "task" (a user of the task's own), elevationLevel "nonadmin" or
// "admin" (root of the task's sandbox only).
type AutoUser struct {
	Scope          string `json:"scope,omitempty"`
	ElevationLevel string `json:"elevationLevel,omitempty"`
}

// UserAccount is one of the pool's userAccounts, as far as a node needs it.
type UserAccount struct {
	Name           string `json:"name"`
	ElevationLevel string `json:"elevationLevel,omitempty"`
}

// Certificate is a certificate to install into the node's certificates
// directory.
type Certificate struct {
	Thumbprint          string `json:"thumbprint"`
	ThumbprintAlgorithm string `json:"thumbprintAlgorithm"`
	Format              string `json:"format"`
	// Data is the certificate as uploaded (base64 of PFX or CER).
	Data     string `json:"data"`
	Password string `json:"password,omitempty"`
}

// Config is the pool's customer configuration for the node; it is dropped
// when the account locks and sent again when it unlocks.
type Config struct {
	Generation   int64         `json:"generation"`
	Certificates []Certificate `json:"certificates,omitempty"`
	// Identities lists the client ids of the pool's user-assigned
	// identities; empty means no managed identity endpoint.
	Identities []string `json:"identities,omitempty"`
	// UserAccounts are the pool's named users (userIdentity.username).
	UserAccounts []UserAccount `json:"userAccounts,omitempty"`
}

// SyncResponse is the server's answer to a sync.
type SyncResponse struct {
	// State is the node's state as the server sees it (idle, running,
	// unusable, leavingpool, ...).
	State string `json:"state"`
	// Drop tells the agent to kill every run and forget all customer data
	// (the account's key is inaccessible).
	Drop bool `json:"drop,omitempty"`
	// Leave tells the agent to stop (the node was removed from the pool).
	Leave bool `json:"leave,omitempty"`
	// Reboot tells the agent to kill its runs and start over as if booted.
	Reboot bool `json:"reboot,omitempty"`
	// Rejoin tells the agent to kill its runs and join again: the server
	// no longer knows them (it restarted, or had declared the node lost).
	Rejoin bool `json:"rejoin,omitempty"`
	// Config, when set, replaces the agent's configuration.
	Config *Config `json:"config,omitempty"`
	// Runs are new runs to start.
	Runs []Run `json:"runs,omitempty"`
	// Kill lists runs to kill (terminate, delete).
	Kill []string `json:"kill,omitempty"`
	// Files are file requests to answer with POST /node/v1/files.
	Files []FileRequest `json:"files,omitempty"`
}

// FileRequest asks the agent for a node or task file, a listing, or a
// delete.
type FileRequest struct {
	// ID is the request's id, random, to be echoed in the FileReply.
	ID string `json:"id"`
	// Method is GET, HEAD or DELETE.
	Method string `json:"method"`
	// Dir confines the request: a task's directory relative to the node
	// root, or "" for the node root.
	Dir string `json:"dir,omitempty"`
	// Path is the file or directory, relative to Dir ("" for Dir itself).
	Path      string `json:"path"`
	Recursive bool   `json:"recursive,omitempty"`
	// Range is an HTTP Range header value for GET.
	Range string `json:"range,omitempty"`
}

// FileReplyHeader is the header of POST /node/v1/files that carries the
// FileReply (JSON).
const FileReplyHeader = "Custody-File-Reply"

// FileReply heads the agent's answer to a FileRequest; the body of the
// POST is what follows it: the file's bytes (or the requested range), a
// FileListing for a directory, nothing for HEAD and DELETE.
type FileReply struct {
	ID string `json:"id"`
	// Status is 200, 206, 204 (deleted), 404 (no such file), 403 (outside
	// the served directory, or certificate material), 409 (a directory
	// deleted without recursive), 400 or 416.
	Status    int  `json:"status"`
	Directory bool `json:"directory,omitempty"`
	// ContentLength is the file's length, or the range's (-1: unknown).
	ContentLength int64  `json:"contentLength"`
	ContentRange  string `json:"contentRange,omitempty"`
	LastModified  string `json:"lastModified,omitempty"`
	// Mode is the file's permission bits in octal (0644).
	Mode string `json:"mode,omitempty"`
}

// TokenRequest asks for a managed identity token for a task.
type TokenRequest struct {
	Resource string `json:"resource"`
	ClientID string `json:"clientId,omitempty"`
	// ResourceID selects by identity resource id (mi_res_id).
	ResourceID  string `json:"resourceId,omitempty"`
	PrincipalID string `json:"principalId,omitempty"`
}

// TokenResponse is an access token for a task.
type TokenResponse struct {
	AccessToken string `json:"accessToken"`
	ExpiresOn   int64  `json:"expiresOn"`
	Resource    string `json:"resource"`
	ClientID    string `json:"clientId"`
}
