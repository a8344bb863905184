package compute

import "time"

// Node states, as Azure spells them.
const (
	NodeCreating            = "creating"
	NodeStarting            = "starting"
	NodeWaitingForStartTask = "waitingforstarttask"
	NodeStartTaskFailed     = "starttaskfailed"
	NodeIdle                = "idle"
	NodeRunning             = "running"
	NodeRebooting           = "rebooting"
	NodeUnusable            = "unusable"
	NodeOffline             = "offline"
	NodeLeavingPool         = "leavingpool"
	NodeUnknown             = "unknown"
)

// StartTaskInfo is how the pool's start task went on a node.
type StartTaskInfo struct {
	State         string     `json:"state"` // running, completed
	StartTime     time.Time  `json:"startTime"`
	EndTime       *time.Time `json:"endTime,omitempty"`
	ExitCode      *int       `json:"exitCode,omitempty"`
	RetryCount    int        `json:"retryCount"`
	LastRetryTime *time.Time `json:"lastRetryTime,omitempty"`
	Result        string     `json:"result,omitempty"` // success, failure
}

// NodeError is an error a node reports (Azure's computeNodeError).
type NodeError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// RecentTask is a task that ran on a node recently.
type RecentTask struct {
	JobID     string
	TaskID    string
	State     string
	StartTime time.Time
}

// Node is a compute node: one node agent in a pool.
type Node struct {
	Account             string
	PoolID              string
	ID                  string
	State               string
	SchedulingEnabled   bool
	StateTransitionTime time.Time
	AllocationTime      time.Time
	LastBootTime        time.Time
	IPAddress           string
	VMSize              string
	IsDedicated         bool
	// Local is set for nodes the server started as child processes.
	Local bool

	TotalTasksRun       int
	TotalTasksSucceeded int
	RunningTasks        int
	RunningSlots        int
	RecentTasks         []RecentTask
	StartTask           *StartTaskInfo
	Errors              []NodeError
	AgentVersion        string
	LastSync            time.Time
}
