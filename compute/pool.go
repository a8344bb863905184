package compute

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"time"

	"custody"
	"custody/batch"
	"custody/node"
)

// Pool states and allocation states, as Azure spells them.
const (
	PoolActive   = "active"
	PoolDeleting = "deleting"

	AllocSteady   = "steady"
	AllocResizing = "resizing"
	AllocStopping = "stopping"
)

// VMSize is what a vmSize name gives a node: its task slots by default and
// its budget, which the node's sandbox enforces (package node/sandbox): a
// control group for the node and one for each task, each holding the CPU
// quota, the memory limit and the process limit of the size, and a disk
// budget for each task's files.
type VMSize struct {
	Name     string
	CPUs     int
	MemoryMB int
	// DiskGB is the size's temporary disk: each task's budget for its
	// working directory, stdout.txt and stderr.txt (server flag
	// --task-disk-limit may lower it).
	DiskGB int
}

// PidsPerCPU is the process and thread limit of a node (and of each task
// on it) per CPU of its size.
func (VMSize) PidsPerCPU() int { return 1024 }

// vmSizes maps the usual Azure size names to a budget. A node of a size
// runs up to CPUs task slots by default (taskSlotsPerNode defaults to 1, as
// in Azure, and may be at most 4 x CPUs, capped at 256). Processes and
// threads: 1024 per CPU.
//
//	size              CPUs  memory  disk       size              CPUs  memory  disk
//	standard_a1_v2      1    2 GiB   10 GiB    standard_d2s_v3     2    8 GiB   16 GiB
//	standard_a2_v2      2    4 GiB   20 GiB    standard_d4s_v3     4   16 GiB   32 GiB
//	standard_a4_v2      4    8 GiB   40 GiB    standard_d8s_v3     8   32 GiB   64 GiB
//	standard_d1_v2      1  3.5 GiB   50 GiB    standard_d16s_v3   16   64 GiB  128 GiB
//	standard_ds1_v2     1  3.5 GiB    7 GiB    standard_d2s_v5     2    8 GiB   16 GiB
//	standard_d2_v2      2    7 GiB  100 GiB    standard_d4s_v5     4   16 GiB   32 GiB
//	standard_d2_v3      2    8 GiB   50 GiB    standard_e2s_v3     2   16 GiB   32 GiB
//	standard_d4_v3      4   16 GiB  100 GiB    standard_e4s_v3     4   32 GiB   64 GiB
//	standard_d8_v3      8   32 GiB  200 GiB    standard_f2s_v2     2    4 GiB   16 GiB
//	                                           standard_f4s_v2     4    8 GiB   32 GiB
//	                                           standard_f8s_v2     8   16 GiB   64 GiB
var vmSizes = map[string]VMSize{}

func init() {
	for _, s := range []VMSize{
		{"standard_a1_v2", 1, 2048, 10}, {"standard_a2_v2", 2, 4096, 20}, {"standard_a4_v2", 4, 8192, 40},
		{"standard_d1_v2", 1, 3584, 50}, {"standard_ds1_v2", 1, 3584, 7}, {"standard_d2_v2", 2, 7168, 100},
		{"standard_d2_v3", 2, 8192, 50}, {"standard_d4_v3", 4, 16384, 100}, {"standard_d8_v3", 8, 32768, 200},
		{"standard_d2s_v3", 2, 8192, 16}, {"standard_d4s_v3", 4, 16384, 32}, {"standard_d8s_v3", 8, 32768, 64},
		{"standard_d16s_v3", 16, 65536, 128}, {"standard_d2s_v5", 2, 8192, 16}, {"standard_d4s_v5", 4, 16384, 32},
		{"standard_e2s_v3", 2, 16384, 32}, {"standard_e4s_v3", 4, 32768, 64},
		{"standard_f2s_v2", 2, 4096, 16}, {"standard_f4s_v2", 4, 8192, 32}, {"standard_f8s_v2", 8, 16384, 64},
	} {
		vmSizes[s.Name] = s
	}
}

// LookupVMSize returns the budget of a vmSize name (case-insensitive).
func LookupVMSize(name string) (VMSize, bool) {
	s, ok := vmSizes[strings.ToLower(name)]
	return s, ok
}

// MaxNodesPerPool bounds targetDedicatedNodes + targetLowPriorityNodes.
const MaxNodesPerPool = 64

// NameValue is an environment setting or a metadata item.
type NameValue struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// StartTask runs on each node as it joins the pool, before it takes work.
type StartTask struct {
	CommandLine         string          `json:"commandLine"`
	EnvironmentSettings []NameValue     `json:"environmentSettings,omitempty"`
	MaxTaskRetryCount   *int32          `json:"maxTaskRetryCount,omitempty"`
	WaitForSuccess      *bool           `json:"waitForSuccess,omitempty"`
	UserIdentity        json.RawMessage `json:"userIdentity,omitempty"`
	ResourceFiles       json.RawMessage `json:"resourceFiles,omitempty"`
	ContainerSettings   json.RawMessage `json:"containerSettings,omitempty"`
}

// User returns the start task's userIdentity for its node (nil: the
// pool's non-admin auto-user; unreadable JSON is treated the same).
func (s *StartTask) User() *node.UserIdentity {
	if len(s.UserIdentity) == 0 || string(s.UserIdentity) == "null" {
		return nil
	}
	var u node.UserIdentity
	if json.Unmarshal(s.UserIdentity, &u) != nil {
		return nil
	}
	return &u
}

// UserAccount is one of a pool's userAccounts. The password is a secret
// of the customer's: sealed with the pool's spec and never shown again.
type UserAccount struct {
	Name                     string          `json:"name"`
	Password                 string          `json:"password,omitempty"`
	ElevationLevel           string          `json:"elevationLevel,omitempty"`
	LinuxUserConfiguration   json.RawMessage `json:"linuxUserConfiguration,omitempty"`
	WindowsUserConfiguration json.RawMessage `json:"windowsUserConfiguration,omitempty"`
}

// MaxUserAccounts bounds a pool's userAccounts.
const MaxUserAccounts = 64

var userNameRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,19}$`)

func validateUserAccounts(poolID string, accounts []UserAccount) error {
	if len(accounts) > MaxUserAccounts {
		return custody.Errorf(custody.KindInvalid, "InvalidPropertyValue", "Pool %q has %d userAccounts; at most %d are allowed.", poolID, len(accounts), MaxUserAccounts)
	}
	seen := map[string]bool{}
	for i := range accounts {
		u := &accounts[i]
		if !userNameRE.MatchString(u.Name) {
			return custody.Errorf(custody.KindInvalid, "InvalidPropertyValue", "userAccounts name %q of pool %q is not valid: use 1 to 20 letters, digits, '_', '.' or '-'.", u.Name, poolID)
		}
		if seen[strings.ToLower(u.Name)] {
			return custody.Errorf(custody.KindInvalid, "InvalidPropertyValue", "Pool %q has two userAccounts named %q.", poolID, u.Name)
		}
		seen[strings.ToLower(u.Name)] = true
		if u.Password == "" {
			return custody.Errorf(custody.KindInvalid, "MissingRequiredProperty", "userAccounts %q of pool %q has no password.", u.Name, poolID)
		}
		switch strings.ToLower(u.ElevationLevel) {
		case "", "nonadmin":
			u.ElevationLevel = "nonadmin"
		case "admin":
			u.ElevationLevel = "admin"
		default:
			return custody.Errorf(custody.KindInvalid, "InvalidPropertyValue", "userAccounts %q of pool %q has elevationLevel %q: use nonadmin or admin.", u.Name, poolID, u.ElevationLevel)
		}
	}
	return nil
}

// WaitsForSuccess reports whether nodes wait for the start task (Azure's
// default is true).
func (s *StartTask) WaitsForSuccess() bool { return s.WaitForSuccess == nil || *s.WaitForSuccess }

// PoolSpec is what a customer writes about a pool that is sealed with the
// account's DEK: names, the start task (command line and environment),
// metadata and the image configuration.
type PoolSpec struct {
	DisplayName                 string          `json:"displayName,omitempty"`
	StartTask                   *StartTask      `json:"startTask,omitempty"`
	Metadata                    []NameValue     `json:"metadata,omitempty"`
	VirtualMachineConfiguration json.RawMessage `json:"virtualMachineConfiguration,omitempty"`
	NetworkConfiguration        json.RawMessage `json:"networkConfiguration,omitempty"`
	ResourceTags                json.RawMessage `json:"resourceTags,omitempty"`
	UserAccounts                []UserAccount   `json:"userAccounts,omitempty"`
}

// CertificateReference names a certificate installed on the pool's nodes.
type CertificateReference struct {
	Thumbprint          string   `json:"thumbprint"`
	ThumbprintAlgorithm string   `json:"thumbprintAlgorithm"`
	StoreLocation       string   `json:"storeLocation,omitempty"`
	StoreName           string   `json:"storeName,omitempty"`
	Visibility          []string `json:"visibility,omitempty"`
}

// PoolIdentity is a user-assigned identity attached to a pool.
type PoolIdentity struct {
	ResourceID  string `json:"resourceId"`
	ClientID    string `json:"clientId,omitempty"`
	PrincipalID string `json:"principalId,omitempty"`
}

// Pool is a pool of compute nodes in an account. Fields outside Spec are
// service metadata kept in the clear; Spec is sealed at rest.
type Pool struct {
	Account string
	ID      string
	ETag    string

	VMSize            string
	TaskSlotsPerNode  int
	TargetDedicated   int
	TargetLowPriority int
	ResizeTimeout     time.Duration
	NodeFillType      string // spread or pack
	Identities        []PoolIdentity
	Certificates      []CertificateReference

	State               string
	StateTransitionTime time.Time
	AllocationState     string
	AllocationTime      time.Time // allocationStateTransitionTime
	CreatedAt           time.Time
	LastModified        time.Time
	ResizeErrors        []ResizeError

	Spec PoolSpec
	// Sealed is Spec sealed with the account's DEK (what is stored).
	Sealed []byte
}

// ResizeError says why a resize did not reach its target.
type ResizeError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

var poolIDPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// ValidatePoolID checks a pool id as Azure does.
func ValidatePoolID(id string) error {
	if !poolIDPattern.MatchString(id) {
		return custody.Errorf(custody.KindInvalid, "InvalidPropertyValue",
			"The pool id %q is invalid: use 1 to 64 letters, digits, hyphens and underscores.", id)
	}
	return nil
}

// Validate checks a pool about to be created and fills in defaults.
func (p *Pool) Validate() error {
	if err := ValidatePoolID(p.ID); err != nil {
		return err
	}
	if p.VMSize == "" {
		return custody.Errorf(custody.KindInvalid, "MissingRequiredProperty", "The pool %q has no vmSize; give one such as standard_d2s_v3.", p.ID)
	}
	size, ok := LookupVMSize(p.VMSize)
	if !ok {
		return custody.Errorf(custody.KindInvalid, "InvalidPropertyValue", "The vmSize %q of pool %q is not supported; use one of standard_a1_v2, standard_d2s_v3, standard_d4s_v3, standard_d8s_v3, standard_f2s_v2, ... (see LookupVMSize).", p.VMSize, p.ID)
	}
	p.VMSize = size.Name
	if p.TaskSlotsPerNode == 0 {
		p.TaskSlotsPerNode = 1
	}
	if max := min(4*size.CPUs, 256); p.TaskSlotsPerNode < 1 || p.TaskSlotsPerNode > max {
		return custody.Errorf(custody.KindInvalid, "InvalidPropertyValue", "taskSlotsPerNode %d of pool %q is out of range: a %s node takes 1 to %d.", p.TaskSlotsPerNode, p.ID, size.Name, max)
	}
	if err := validateTargets(p.ID, p.TargetDedicated, p.TargetLowPriority); err != nil {
		return err
	}
	switch strings.ToLower(p.NodeFillType) {
	case "", "spread":
		p.NodeFillType = "spread"
	case "pack":
		p.NodeFillType = "pack"
	default:
		return custody.Errorf(custody.KindInvalid, "InvalidPropertyValue", "taskSchedulingPolicy.nodeFillType %q is not valid: use spread or pack.", p.NodeFillType)
	}
	if err := validateUserAccounts(p.ID, p.Spec.UserAccounts); err != nil {
		return err
	}
	if st := p.Spec.StartTask; st != nil && strings.TrimSpace(st.CommandLine) == "" {
		return custody.Errorf(custody.KindInvalid, "MissingRequiredProperty", "The start task of pool %q has no commandLine.", p.ID)
	}
	for _, c := range p.Certificates {
		if c.Thumbprint == "" {
			return custody.Errorf(custody.KindInvalid, "MissingRequiredProperty", "A certificate reference of pool %q has no thumbprint.", p.ID)
		}
	}
	return nil
}

func validateTargets(id string, dedicated, low int) error {
	if dedicated < 0 || low < 0 {
		return custody.Errorf(custody.KindInvalid, "InvalidPropertyValue", "Target node counts of pool %q must not be negative.", id)
	}
	// Each count is checked alone first, so that huge values cannot wrap
	// their sum below the limit.
	if dedicated > MaxNodesPerPool || low > MaxNodesPerPool || dedicated+low > MaxNodesPerPool {
		return custody.Errorf(custody.KindInvalid, "InvalidPropertyValue", "Pool %q asks for %d dedicated and %d low-priority nodes; this server allows at most %d per pool.", id, dedicated, low, MaxNodesPerPool)
	}
	return nil
}

// Target is the number of nodes the pool should have.
func (p *Pool) Target() int { return p.TargetDedicated + p.TargetLowPriority }

// holdToCoreQuota lowers p's targets to what the account's core quotas
// leave after the targets of its other pools, and returns the resize errors
// Azure reports when quota stops an allocation (none if p fits).
func holdToCoreQuota(q batch.Quotas, p *Pool, pools []*Pool) []ResizeError {
	size, ok := LookupVMSize(p.VMSize)
	if !ok || size.CPUs < 1 {
		return nil
	}
	usedDedicated, usedLow := 0, 0
	for _, o := range pools {
		if o.State == PoolDeleting || strings.EqualFold(o.ID, p.ID) {
			continue
		}
		if os, ok := LookupVMSize(o.VMSize); ok {
			usedDedicated += o.TargetDedicated * os.CPUs
			usedLow += o.TargetLowPriority * os.CPUs
		}
	}
	var errs []ResizeError
	if free := max(0, q.DedicatedCores-usedDedicated) / size.CPUs; p.TargetDedicated > free {
		errs = append(errs, ResizeError{Code: "AccountCoreQuotaReached", Message: fmt.Sprintf(
			"The specified account has reached VM core quota: pool %q asked for %d dedicated %s nodes (%d cores each), but the account's dedicatedCoreQuota of %d leaves room for %d.",
			p.ID, p.TargetDedicated, p.VMSize, size.CPUs, q.DedicatedCores, free)})
		p.TargetDedicated = free
	}
	if free := max(0, q.LowPriorityCores-usedLow) / size.CPUs; p.TargetLowPriority > free {
		errs = append(errs, ResizeError{Code: "AccountLowPriorityCoreQuotaReached", Message: fmt.Sprintf(
			"The specified account has reached low-priority core quota: pool %q asked for %d low-priority %s nodes (%d cores each), but the account's lowPriorityCoreQuota of %d leaves room for %d.",
			p.ID, p.TargetLowPriority, p.VMSize, size.CPUs, q.LowPriorityCores, free)})
		p.TargetLowPriority = free
	}
	return errs
}
