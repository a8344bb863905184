package httpapi

import (
	"net/http"
	"strings"
	"time"

	"custody"
	"custody/batch"
	"custody/compute"
)

// Job preparation and release task status and task reactivation:
//
//	GET  /jobs/{job}/jobpreparationandreleasetaskstatus  (compute: per node)
//	POST /jobs/{job}/tasks/{task}/reactivate
func jobTaskRoutes() []batchRoute {
	type d = batchData
	return []batchRoute{
		{DataRoute: DataRoute{"POST", "/jobs/{jobId}/tasks/{taskId}/reactivate"}, serve: (*d).reactivateTask},
		{DataRoute: DataRoute{"GET", "/jobs/{jobId}/jobpreparationandreleasetaskstatus"}, serve: (*d).jobTaskStatus, compute: true},
	}
}

func (b *batchData) reactivateTask(q *batchRequest) error {
	t, err := b.data.ReactivateTask(q.ctx, q.account.Name, q.segment(1), q.segment(3), q.ifMatch())
	if err != nil {
		return err
	}
	q.entityHeaders(t.ETag, t.LastModified, q.taskURL(t.JobID, t.ID))
	return q.noBody(http.StatusNoContent)
}

// jobTaskExecutionOut is Azure's jobPreparationTaskExecutionInfo and
// jobReleaseTaskExecutionInfo.
type jobTaskExecutionOut struct {
	StartTime            time.Time       `json:"startTime"`
	EndTime              *time.Time      `json:"endTime,omitempty"`
	State                string          `json:"state"`
	TaskRootDirectory    string          `json:"taskRootDirectory,omitempty"`
	TaskRootDirectoryURL string          `json:"taskRootDirectoryUrl,omitempty"`
	ExitCode             *int            `json:"exitCode,omitempty"`
	FailureInfo          *failureInfoOut `json:"failureInfo,omitempty"`
	RetryCount           *int            `json:"retryCount,omitempty"`
	LastRetryTime        *time.Time      `json:"lastRetryTime,omitempty"`
	Result               string          `json:"result,omitempty"`
}

type jobTaskStatusOut struct {
	PoolID                          string               `json:"poolId"`
	NodeID                          string               `json:"nodeId"`
	NodeURL                         string               `json:"nodeUrl"`
	JobPreparationTaskExecutionInfo *jobTaskExecutionOut `json:"jobPreparationTaskExecutionInfo,omitempty"`
	JobReleaseTaskExecutionInfo     *jobTaskExecutionOut `json:"jobReleaseTaskExecutionInfo,omitempty"`
}

func (q *batchRequest) jobTaskExecution(pool, nodeID string, e *compute.JobTaskExecution, prep bool) *jobTaskExecutionOut {
	out := &jobTaskExecutionOut{StartTime: e.StartTime, EndTime: e.EndTime, State: e.State, ExitCode: e.ExitCode, Result: e.Result,
		TaskRootDirectory: e.TaskRootDirectory, LastRetryTime: e.LastRetryTime}
	if e.TaskRootDirectory != "" {
		out.TaskRootDirectoryURL = q.nodeURL(pool, nodeID) + "/files/" + escapePath(e.TaskRootDirectory)
	}
	if prep {
		n := e.RetryCount
		out.RetryCount = &n
	}
	if e.FailureCode != "" {
		out.FailureInfo = &failureInfoOut{Category: "usererror", Code: e.FailureCode, Message: e.FailureMessage}
	}
	return out
}

// jobTaskStatus lists the job's preparation and release tasks per node, in
// node id order, a page at a time (maxresults, $skiptoken), optionally
// filtered ($filter on nodeId, poolId and the executions' state and
// result).
func (b *batchData) jobTaskStatus(q *batchRequest) error {
	lq, err := q.listQuery()
	if err != nil {
		return err
	}
	f, err := batch.ParseFilter(lq.Filter, "nodeId", "poolId", "jobPreparationTaskExecutionInfo/state", "jobPreparationTaskExecutionInfo/result",
		"jobReleaseTaskExecutionInfo/state", "jobReleaseTaskExecutionInfo/result")
	if err != nil {
		return err
	}
	j, err := b.data.GetJob(q.ctx, q.account.Name, q.segment(1))
	if err != nil {
		return err
	}
	if j.Spec.JobPreparationTask == nil {
		return custody.Errorf(custody.KindConflict, "JobPreparationTaskNotSpecified", "The specified job does not have a job preparation task: job %q has no jobPreparationTask, so there is no status to list.", j.ID)
	}
	limit := lq.MaxResults
	if limit <= 0 || limit > 1000 {
		limit = 1000
	}
	var items []any
	next := ""
	for _, st := range b.compute.JobTaskStatus(q.account.Name, j.ID) {
		if lq.SkipToken != "" && strings.ToLower(st.NodeID) <= strings.ToLower(lq.SkipToken) {
			continue
		}
		props := map[string]string{"nodeid": st.NodeID, "poolid": st.PoolID,
			"jobpreparationtaskexecutioninfo/state": st.Preparation.State, "jobpreparationtaskexecutioninfo/result": st.Preparation.Result}
		if st.Release != nil {
			props["jobreleasetaskexecutioninfo/state"], props["jobreleasetaskexecutioninfo/result"] = st.Release.State, st.Release.Result
		}
		if !f.Match(props) {
			continue
		}
		if len(items) == limit {
			next = items[len(items)-1].(jobTaskStatusOut).NodeID
			break
		}
		out := jobTaskStatusOut{PoolID: st.PoolID, NodeID: st.NodeID, NodeURL: q.nodeURL(st.PoolID, st.NodeID),
			JobPreparationTaskExecutionInfo: q.jobTaskExecution(st.PoolID, st.NodeID, &st.Preparation, true)}
		if st.Release != nil {
			out.JobReleaseTaskExecutionInfo = q.jobTaskExecution(st.PoolID, st.NodeID, st.Release, false)
		}
		items = append(items, out)
	}
	if items == nil {
		items = []any{}
	}
	return q.writeList("Microsoft.Azure.Batch.Protocol.Entities.Container.JobPreparationAndReleaseTaskExecutionInformations", items, next)
}
