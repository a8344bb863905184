package httpapi

import (
	"net/http"
	"time"

	"custody"
	"custody/batch"
)

// taskIn is the body of a task add (CreateTaskContent).
type taskIn struct {
	ID string `json:"id"`
	batch.TaskSpec
}

// taskOut is a Task as the Batch REST API returns it.
type taskOut struct {
	Metadata                    string     `json:"odata.metadata,omitempty"`
	ID                          string     `json:"id"`
	URL                         string     `json:"url"`
	ETag                        string     `json:"eTag"`
	LastModified                time.Time  `json:"lastModified"`
	CreationTime                time.Time  `json:"creationTime"`
	State                       string     `json:"state"`
	StateTransitionTime         time.Time  `json:"stateTransitionTime"`
	PreviousState               string     `json:"previousState,omitempty"`
	PreviousStateTransitionTime *time.Time `json:"previousStateTransitionTime,omitempty"`
	batch.TaskSpec
	ExecutionInfo taskExecutionOut `json:"executionInfo"`
	NodeInfo      *taskNodeInfoOut `json:"nodeInfo,omitempty"`
}

type taskExecutionOut struct {
	StartTime    *time.Time `json:"startTime,omitempty"`
	EndTime      *time.Time `json:"endTime,omitempty"`
	RetryCount   int32      `json:"retryCount"`
	RequeueCount int32      `json:"requeueCount"`
	taskRunOut
}

func (q *batchRequest) taskURL(jobID, id string) string {
	return q.jobURL(jobID) + "/tasks/" + escapeID(id)
}

func (q *batchRequest) taskBody(t *batch.Task, withMetadata bool) taskOut {
	out := taskOut{
		ID: t.ID, URL: q.taskURL(t.JobID, t.ID), ETag: t.ETag, LastModified: t.LastModified, CreationTime: t.CreationTime,
		State: t.State, StateTransitionTime: t.StateTransitionTime, PreviousState: t.PreviousState,
		PreviousStateTransitionTime: optTime(t.PreviousStateTransitionTime), TaskSpec: t.Spec,
		ExecutionInfo: taskExecutionOut{StartTime: optTime(t.StartTime), EndTime: optTime(t.EndTime), RetryCount: t.RetryCount, RequeueCount: t.RequeueCount},
	}
	if withMetadata {
		out.Metadata = q.metadata("tasks/@Element")
	}
	q.addTaskRun(&out, t)
	return out
}

func (b *batchData) addTask(q *batchRequest) error {
	var in taskIn
	if err := q.decode(&in); err != nil {
		return err
	}
	t, err := b.data.AddTask(q.ctx, q.account.Name, q.segment(1), in.ID, in.TaskSpec)
	if err != nil {
		return err
	}
	return q.created(t.ETag, t.LastModified, q.taskURL(t.JobID, t.ID))
}

// taskAddResultOut is one entry of an add-collection answer.
type taskAddResultOut struct {
	Status       string      `json:"status"`
	TaskID       string      `json:"taskId"`
	ETag         string      `json:"eTag,omitempty"`
	LastModified *time.Time  `json:"lastModified,omitempty"`
	Location     string      `json:"location,omitempty"`
	Error        *batchError `json:"error,omitempty"`
}

// maxTaskCollectionBody is Azure's limit on an addtaskcollection body: "the
// total serialized size of this collection must be less than 1MB".
const maxTaskCollectionBody = 1 << 20

func (b *batchData) addTaskCollection(q *batchRequest) error {
	var in struct {
		Value []taskIn `json:"value"`
	}
	setBodyLimit(q.r, maxTaskCollectionBody)
	if err := q.decode(&in); err != nil {
		return err
	}
	tasks := make([]batch.NewTask, len(in.Value))
	for i, t := range in.Value {
		tasks[i] = batch.NewTask{ID: t.ID, Spec: t.TaskSpec}
	}
	res, err := b.data.AddTasks(q.ctx, q.account.Name, q.segment(1), tasks)
	if err != nil {
		return err
	}
	reqID := q.w.Header().Get("x-ms-request-id")
	out := make([]taskAddResultOut, len(res))
	for i, r := range res {
		o := taskAddResultOut{TaskID: r.TaskID}
		switch {
		case r.Err == nil:
			o.Status = "success"
			o.ETag, o.LastModified, o.Location = r.Task.ETag, optTime(r.Task.LastModified), q.taskURL(r.Task.JobID, r.Task.ID)
		default:
			o.Status = "clienterror"
			if custody.ErrorKind(r.Err) == custody.KindInternal {
				o.Status = "servererror"
			}
			e := newBatchError(q.r, reqID, r.Err)
			e.Metadata = ""
			o.Error = &e
		}
		out[i] = o
	}
	writeJSON(q.w, http.StatusOK, struct {
		Metadata string             `json:"odata.metadata"`
		Value    []taskAddResultOut `json:"value"`
	}{q.metadata("Microsoft.Azure.Batch.Protocol.Entities.TaskAddCollectionResult"), out})
	return nil
}

func (b *batchData) getTask(q *batchRequest) error {
	t, err := b.data.GetTask(q.ctx, q.account.Name, q.segment(1), q.segment(3))
	if err != nil {
		return err
	}
	return q.writeEntity(q.taskBody(t, true), t.ETag, t.LastModified)
}

func (b *batchData) listTasks(q *batchRequest) error {
	lq, err := q.listQuery()
	if err != nil {
		return err
	}
	ts, next, err := b.data.ListTasks(q.ctx, q.account.Name, q.segment(1), lq)
	if err != nil {
		return err
	}
	items := make([]any, len(ts))
	for i, t := range ts {
		items[i] = q.taskBody(t, false)
	}
	return q.writeList("tasks", items, next)
}

func (b *batchData) replaceTask(q *batchRequest) error {
	var in struct {
		Constraints *batch.TaskConstraints `json:"constraints"`
	}
	if err := q.decode(&in); err != nil {
		return err
	}
	t, err := b.data.ReplaceTask(q.ctx, q.account.Name, q.segment(1), q.segment(3), q.ifMatch(), in.Constraints)
	if err != nil {
		return err
	}
	q.entityHeaders(t.ETag, t.LastModified, q.taskURL(t.JobID, t.ID))
	return q.noBody(http.StatusOK)
}

func (b *batchData) deleteTask(q *batchRequest) error {
	if err := b.data.DeleteTask(q.ctx, q.account.Name, q.segment(1), q.segment(3), q.ifMatch()); err != nil {
		return err
	}
	return q.noBody(http.StatusOK)
}

func (b *batchData) terminateTask(q *batchRequest) error {
	t, err := b.data.TerminateTask(q.ctx, q.account.Name, q.segment(1), q.segment(3), q.ifMatch())
	if err != nil {
		return err
	}
	q.entityHeaders(t.ETag, t.LastModified, q.taskURL(t.JobID, t.ID))
	return q.noBody(http.StatusNoContent)
}
