package batch

// Customer-written specifications of jobs, tasks and certificates. Their
// JSON names are those of the Batch REST API (api-version
// 2024-07-01.20.0), so the same values are what a client sends, what the
// data plane answers, and what is sealed with the account's DEK before it is
// stored. Optional scalars are pointers so that an update can tell "not
// given" from a zero value.

// EnvironmentSetting is one environment variable of a task.
type EnvironmentSetting struct {
	Name  string  `json:"name"`
	Value *string `json:"value,omitempty"`
}

// MetadataItem is one name-value pair of metadata.
type MetadataItem struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// IdentityReference names a user-assigned identity of a pool.
type IdentityReference struct {
	ResourceID *string `json:"resourceId,omitempty"`
}

// ResourceFile is a file downloaded to a node before a task runs.
type ResourceFile struct {
	AutoStorageContainerName *string            `json:"autoStorageContainerName,omitempty"`
	StorageContainerURL      *string            `json:"storageContainerUrl,omitempty"`
	HTTPURL                  *string            `json:"httpUrl,omitempty"`
	BlobPrefix               *string            `json:"blobPrefix,omitempty"`
	FilePath                 *string            `json:"filePath,omitempty"`
	FileMode                 *string            `json:"fileMode,omitempty"`
	IdentityReference        *IdentityReference `json:"identityReference,omitempty"`
}

// HTTPHeader is a header sent with an output file upload.
type HTTPHeader struct {
	Name  string  `json:"name"`
	Value *string `json:"value,omitempty"`
}

// OutputFileContainer is a blob container output files go to.
type OutputFileContainer struct {
	Path              *string            `json:"path,omitempty"`
	ContainerURL      string             `json:"containerUrl"`
	IdentityReference *IdentityReference `json:"identityReference,omitempty"`
	UploadHeaders     []HTTPHeader       `json:"uploadHeaders,omitempty"`
}

// OutputFileDestination is where output files go.
type OutputFileDestination struct {
	Container *OutputFileContainer `json:"container,omitempty"`
}

// OutputFileUploadConfig says when output files are uploaded.
type OutputFileUploadConfig struct {
	UploadCondition string `json:"uploadCondition"`
}

// OutputFile is a file uploaded from a node after a task runs.
type OutputFile struct {
	FilePattern   string                 `json:"filePattern"`
	Destination   OutputFileDestination  `json:"destination"`
	UploadOptions OutputFileUploadConfig `json:"uploadOptions"`
}

// AutoUserSpecification is the auto-user a task runs as.
type AutoUserSpecification struct {
	Scope          *string `json:"scope,omitempty"`
	ElevationLevel *string `json:"elevationLevel,omitempty"`
}

// UserIdentity is the user a task runs as.
type UserIdentity struct {
	Username *string                `json:"username,omitempty"`
	AutoUser *AutoUserSpecification `json:"autoUser,omitempty"`
}

// ContainerRegistry is a private container registry.
type ContainerRegistry struct {
	Username          *string            `json:"username,omitempty"`
	Password          *string            `json:"password,omitempty"`
	RegistryServer    *string            `json:"registryServer,omitempty"`
	IdentityReference *IdentityReference `json:"identityReference,omitempty"`
}

// ContainerHostBindMount is a host path mounted into a task's container.
type ContainerHostBindMount struct {
	Source     *string `json:"source,omitempty"`
	IsReadOnly *bool   `json:"isReadOnly,omitempty"`
}

// TaskContainerSettings is the container a task runs in.
type TaskContainerSettings struct {
	ContainerRunOptions          *string                  `json:"containerRunOptions,omitempty"`
	ImageName                    string                   `json:"imageName"`
	Registry                     *ContainerRegistry       `json:"registry,omitempty"`
	WorkingDirectory             *string                  `json:"workingDirectory,omitempty"`
	ContainerHostBatchBindMounts []ContainerHostBindMount `json:"containerHostBatchBindMounts,omitempty"`
}

// TaskConstraints limit a task's run time, retention and retries.
type TaskConstraints struct {
	MaxWallClockTime  *string `json:"maxWallClockTime,omitempty"`
	RetentionTime     *string `json:"retentionTime,omitempty"`
	MaxTaskRetryCount *int32  `json:"maxTaskRetryCount,omitempty"`
}

// JobConstraints limit a job's run time and its tasks' retries.
type JobConstraints struct {
	MaxWallClockTime  *string `json:"maxWallClockTime,omitempty"`
	MaxTaskRetryCount *int32  `json:"maxTaskRetryCount,omitempty"`
}

// ExitOptions say what happens when a task exits a certain way.
type ExitOptions struct {
	JobAction        *string `json:"jobAction,omitempty"`
	DependencyAction *string `json:"dependencyAction,omitempty"`
}

// ExitCodeMapping maps one exit code to exit options.
type ExitCodeMapping struct {
	Code        int32       `json:"code"`
	ExitOptions ExitOptions `json:"exitOptions"`
}

// ExitCodeRangeMapping maps a range of exit codes to exit options.
type ExitCodeRangeMapping struct {
	Start       int32       `json:"start"`
	End         int32       `json:"end"`
	ExitOptions ExitOptions `json:"exitOptions"`
}

// ExitConditions say how the service responds when a task completes.
type ExitConditions struct {
	ExitCodes          []ExitCodeMapping      `json:"exitCodes,omitempty"`
	ExitCodeRanges     []ExitCodeRangeMapping `json:"exitCodeRanges,omitempty"`
	PreProcessingError *ExitOptions           `json:"preProcessingError,omitempty"`
	FileUploadError    *ExitOptions           `json:"fileUploadError,omitempty"`
	Default            *ExitOptions           `json:"default,omitempty"`
}

// AffinityInfo is a locality hint for scheduling.
type AffinityInfo struct {
	AffinityID string `json:"affinityId"`
}

// MultiInstanceSettings make a task run on several nodes.
type MultiInstanceSettings struct {
	NumberOfInstances       *int32         `json:"numberOfInstances,omitempty"`
	CoordinationCommandLine string         `json:"coordinationCommandLine"`
	CommonResourceFiles     []ResourceFile `json:"commonResourceFiles,omitempty"`
}

// ApplicationPackageReference names an application package to deploy.
type ApplicationPackageReference struct {
	ApplicationID string  `json:"applicationId"`
	Version       *string `json:"version,omitempty"`
}

// AuthenticationTokenSettings ask for a token the task can call Batch with.
type AuthenticationTokenSettings struct {
	Access []string `json:"access,omitempty"`
}

// TaskIDRange is an inclusive range of integer task ids.
type TaskIDRange struct {
	Start int32 `json:"start"`
	End   int32 `json:"end"`
}

// TaskDependencies are the tasks a task waits for.
type TaskDependencies struct {
	TaskIDs      []string      `json:"taskIds,omitempty"`
	TaskIDRanges []TaskIDRange `json:"taskIdRanges,omitempty"`
}

// JobManagerTask is the task that controls a job.
type JobManagerTask struct {
	ID                           string                        `json:"id"`
	DisplayName                  *string                       `json:"displayName,omitempty"`
	CommandLine                  string                        `json:"commandLine"`
	ContainerSettings            *TaskContainerSettings        `json:"containerSettings,omitempty"`
	ResourceFiles                []ResourceFile                `json:"resourceFiles,omitempty"`
	OutputFiles                  []OutputFile                  `json:"outputFiles,omitempty"`
	EnvironmentSettings          []EnvironmentSetting          `json:"environmentSettings,omitempty"`
	Constraints                  *TaskConstraints              `json:"constraints,omitempty"`
	RequiredSlots                *int32                        `json:"requiredSlots,omitempty"`
	KillJobOnCompletion          *bool                         `json:"killJobOnCompletion,omitempty"`
	UserIdentity                 *UserIdentity                 `json:"userIdentity,omitempty"`
	RunExclusive                 *bool                         `json:"runExclusive,omitempty"`
	ApplicationPackageReferences []ApplicationPackageReference `json:"applicationPackageReferences,omitempty"`
	AuthenticationTokenSettings  *AuthenticationTokenSettings  `json:"authenticationTokenSettings,omitempty"`
	AllowLowPriorityNode         *bool                         `json:"allowLowPriorityNode,omitempty"`
}

// JobPreparationTask runs on a node before any task of the job.
type JobPreparationTask struct {
	ID                            *string                `json:"id,omitempty"`
	CommandLine                   string                 `json:"commandLine"`
	ContainerSettings             *TaskContainerSettings `json:"containerSettings,omitempty"`
	ResourceFiles                 []ResourceFile         `json:"resourceFiles,omitempty"`
	EnvironmentSettings           []EnvironmentSetting   `json:"environmentSettings,omitempty"`
	Constraints                   *TaskConstraints       `json:"constraints,omitempty"`
	WaitForSuccess                *bool                  `json:"waitForSuccess,omitempty"`
	UserIdentity                  *UserIdentity          `json:"userIdentity,omitempty"`
	RerunOnNodeRebootAfterSuccess *bool                  `json:"rerunOnNodeRebootAfterSuccess,omitempty"`
}

// JobReleaseTask runs on each node that ran the job preparation task, when
// the job ends.
type JobReleaseTask struct {
	ID                  *string                `json:"id,omitempty"`
	CommandLine         string                 `json:"commandLine"`
	ContainerSettings   *TaskContainerSettings `json:"containerSettings,omitempty"`
	ResourceFiles       []ResourceFile         `json:"resourceFiles,omitempty"`
	EnvironmentSettings []EnvironmentSetting   `json:"environmentSettings,omitempty"`
	MaxWallClockTime    *string                `json:"maxWallClockTime,omitempty"`
	RetentionTime       *string                `json:"retentionTime,omitempty"`
	UserIdentity        *UserIdentity          `json:"userIdentity,omitempty"`
}

// JobNetworkConfiguration is the subnet a job's tasks run in.
type JobNetworkConfiguration struct {
	SubnetID             string `json:"subnetId"`
	SkipWithdrawFromVNet *bool  `json:"skipWithdrawFromVNet,omitempty"`
}

// PoolInfo names the pool a job runs on, or describes the auto pool
// created for it (autopool.go).
type PoolInfo struct {
	PoolID                string                 `json:"poolId,omitempty"`
	AutoPoolSpecification *AutoPoolSpecification `json:"autoPoolSpecification,omitempty"`
}

// JobSpec is everything a customer writes about a job. It is sealed as one
// value; the pool id is also kept in the clear (JobMeta.PoolID) for
// scheduling.
type JobSpec struct {
	DisplayName               *string                  `json:"displayName,omitempty"`
	UsesTaskDependencies      *bool                    `json:"usesTaskDependencies,omitempty"`
	Priority                  *int32                   `json:"priority,omitempty"`
	AllowTaskPreemption       *bool                    `json:"allowTaskPreemption,omitempty"`
	MaxParallelTasks          *int32                   `json:"maxParallelTasks,omitempty"`
	Constraints               *JobConstraints          `json:"constraints,omitempty"`
	JobManagerTask            *JobManagerTask          `json:"jobManagerTask,omitempty"`
	JobPreparationTask        *JobPreparationTask      `json:"jobPreparationTask,omitempty"`
	JobReleaseTask            *JobReleaseTask          `json:"jobReleaseTask,omitempty"`
	CommonEnvironmentSettings []EnvironmentSetting     `json:"commonEnvironmentSettings,omitempty"`
	PoolInfo                  PoolInfo                 `json:"poolInfo"`
	OnAllTasksComplete        *string                  `json:"onAllTasksComplete,omitempty"`
	OnTaskFailure             *string                  `json:"onTaskFailure,omitempty"`
	NetworkConfiguration      *JobNetworkConfiguration `json:"networkConfiguration,omitempty"`
	Metadata                  []MetadataItem           `json:"metadata,omitempty"`
	// TerminateReason is the reason given when the job was terminated.
	TerminateReason *string `json:"terminateReason,omitempty"`
}

// JobUpdate is a PATCH of a job: nil fields keep their value.
type JobUpdate struct {
	Priority             *int32                   `json:"priority,omitempty"`
	MaxParallelTasks     *int32                   `json:"maxParallelTasks,omitempty"`
	AllowTaskPreemption  *bool                    `json:"allowTaskPreemption,omitempty"`
	OnAllTasksComplete   *string                  `json:"onAllTasksComplete,omitempty"`
	Constraints          *JobConstraints          `json:"constraints,omitempty"`
	PoolInfo             *PoolInfo                `json:"poolInfo,omitempty"`
	Metadata             []MetadataItem           `json:"metadata,omitempty"`
	NetworkConfiguration *JobNetworkConfiguration `json:"networkConfiguration,omitempty"`
}

// TaskSpec is everything a customer writes about a task. It is sealed as
// one value. Dependencies stay sealed too: the scheduler opens them with the
// account's DEK.
type TaskSpec struct {
	DisplayName                  *string                       `json:"displayName,omitempty"`
	CommandLine                  string                        `json:"commandLine"`
	ContainerSettings            *TaskContainerSettings        `json:"containerSettings,omitempty"`
	ExitConditions               *ExitConditions               `json:"exitConditions,omitempty"`
	ResourceFiles                []ResourceFile                `json:"resourceFiles,omitempty"`
	OutputFiles                  []OutputFile                  `json:"outputFiles,omitempty"`
	EnvironmentSettings          []EnvironmentSetting          `json:"environmentSettings,omitempty"`
	AffinityInfo                 *AffinityInfo                 `json:"affinityInfo,omitempty"`
	Constraints                  *TaskConstraints              `json:"constraints,omitempty"`
	RequiredSlots                *int32                        `json:"requiredSlots,omitempty"`
	UserIdentity                 *UserIdentity                 `json:"userIdentity,omitempty"`
	MultiInstanceSettings        *MultiInstanceSettings        `json:"multiInstanceSettings,omitempty"`
	DependsOn                    *TaskDependencies             `json:"dependsOn,omitempty"`
	ApplicationPackageReferences []ApplicationPackageReference `json:"applicationPackageReferences,omitempty"`
	AuthenticationTokenSettings  *AuthenticationTokenSettings  `json:"authenticationTokenSettings,omitempty"`
}

// CertificateSpec is what a customer uploads as a certificate: sealed as
// one value.
type CertificateSpec struct {
	Data     string  `json:"data"`
	Format   string  `json:"certificateFormat,omitempty"`
	Password *string `json:"password,omitempty"`
	// PublicData is the public part of the certificate (base64 DER), set
	// by validation for both formats.
	PublicData *string `json:"publicData,omitempty"`
}
