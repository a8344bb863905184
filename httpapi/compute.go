package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"

	"custody"
	"custody/batch"
	"custody/compute"
	"custody/node"
	"custody/rm"
)

// Compute routes of the batch data plane (pools, compute nodes, node and
// task files), served by compute.Service:
//
//	GET|POST          /pools
//	GET|HEAD|PATCH|DELETE /pools/{pool}
//	POST              /pools/{pool}/updateproperties|resize|stopresize|removenodes
//	GET               /pools/{pool}/nodes
//	GET               /pools/{pool}/nodes/{node}
//	POST              /pools/{pool}/nodes/{node}/reboot
//	GET               /pools/{pool}/nodes/{node}/files[/{path}]  (HEAD, DELETE)
//	GET               /jobs/{job}/tasks/{task}/files[/{path}]    (HEAD, DELETE)
//	GET               /nodecounts
//	POST              /pools/{pool}/nodecredentials  (Custody extension: a node
//	                  credential for an agent on another machine; answered once)

// RegisterCompute adds the compute routes to the batch data plane.
func (s *Server) RegisterCompute(c *compute.Service) {
	if b, ok := s.batch.(*batchData); ok {
		b.compute = c
	}
	s.nodes = &nodeChannel{c: c}
}

// computeRoutes are the batch data plane's pool, node and file routes
// (part of batchRoutes).
func computeRoutes() []batchRoute {
	type d = batchData
	return []batchRoute{
		{DataRoute: DataRoute{"GET", "/nodecounts"}, serve: (*d).nodeCounts},
		{DataRoute: DataRoute{"GET", "/pools"}, serve: (*d).listPools},
		{DataRoute: DataRoute{"POST", "/pools"}, serve: (*d).addPool},
		{DataRoute: DataRoute{"GET", "/pools/{poolId}"}, serve: (*d).getPool},
		{DataRoute: DataRoute{"HEAD", "/pools/{poolId}"}, serve: (*d).getPool},
		{DataRoute: DataRoute{"PATCH", "/pools/{poolId}"}, serve: (*d).patchPool},
		{DataRoute: DataRoute{"DELETE", "/pools/{poolId}"}, serve: (*d).deletePool},
		{DataRoute: DataRoute{"POST", "/pools/{poolId}/updateproperties"}, serve: (*d).replacePoolProperties},
		{DataRoute: DataRoute{"POST", "/pools/{poolId}/resize"}, serve: (*d).resizePool},
		{DataRoute: DataRoute{"POST", "/pools/{poolId}/stopresize"}, serve: (*d).stopResize},
		{DataRoute: DataRoute{"POST", "/pools/{poolId}/removenodes"}, serve: (*d).removeNodes},
		{DataRoute: DataRoute{"POST", "/pools/{poolId}/nodecredentials"}, serve: (*d).addNodeCredential},
		{DataRoute: DataRoute{"GET", "/pools/{poolId}/nodes"}, serve: (*d).listNodes},
		{DataRoute: DataRoute{"GET", "/pools/{poolId}/nodes/{nodeId}"}, serve: (*d).getNode},
		{DataRoute: DataRoute{"POST", "/pools/{poolId}/nodes/{nodeId}/reboot"}, serve: (*d).rebootNode},
		{DataRoute: DataRoute{"GET", "/pools/{poolId}/nodes/{nodeId}/files/{path...}"}, serve: (*d).nodeFile},
		{DataRoute: DataRoute{"HEAD", "/pools/{poolId}/nodes/{nodeId}/files/{path...}"}, serve: (*d).nodeFile},
		{DataRoute: DataRoute{"DELETE", "/pools/{poolId}/nodes/{nodeId}/files/{path...}"}, serve: (*d).nodeFile},
		{DataRoute: DataRoute{"GET", "/jobs/{jobId}/tasks/{taskId}/files/{path...}"}, serve: (*d).taskFile},
		{DataRoute: DataRoute{"HEAD", "/jobs/{jobId}/tasks/{taskId}/files/{path...}"}, serve: (*d).taskFile},
		{DataRoute: DataRoute{"DELETE", "/jobs/{jobId}/tasks/{taskId}/files/{path...}"}, serve: (*d).taskFile},
	}
}

// ---- pools ----

type startTaskIO = compute.StartTask

type poolIdentityIO struct {
	Type                   string                 `json:"type"`
	UserAssignedIdentities []compute.PoolIdentity `json:"userAssignedIdentities,omitempty"`
}

type taskSchedulingPolicyIO struct {
	NodeFillType string `json:"nodeFillType"`
}

// poolIn is CreatePoolContent and the bodies of update and replace.
type poolIn struct {
	ID                          string                          `json:"id"`
	DisplayName                 *string                         `json:"displayName"`
	VMSize                      string                          `json:"vmSize"`
	VirtualMachineConfiguration json.RawMessage                 `json:"virtualMachineConfiguration"`
	NetworkConfiguration        json.RawMessage                 `json:"networkConfiguration"`
	ResourceTags                json.RawMessage                 `json:"resourceTags"`
	ResizeTimeout               *string                         `json:"resizeTimeout"`
	TargetDedicatedNodes        *int                            `json:"targetDedicatedNodes"`
	TargetLowPriorityNodes      *int                            `json:"targetLowPriorityNodes"`
	EnableAutoScale             *bool                           `json:"enableAutoScale"`
	TaskSlotsPerNode            *int                            `json:"taskSlotsPerNode"`
	TaskSchedulingPolicy        *taskSchedulingPolicyIO         `json:"taskSchedulingPolicy"`
	StartTask                   *startTaskIO                    `json:"startTask"`
	CertificateReferences       *[]compute.CertificateReference `json:"certificateReferences"`
	Metadata                    *[]compute.NameValue            `json:"metadata"`
	Identity                    *poolIdentityIO                 `json:"identity"`
	UserAccounts                *[]compute.UserAccount          `json:"userAccounts"`
}

type poolOut struct {
	OData                         string                         `json:"odata.metadata,omitempty"`
	ID                            string                         `json:"id"`
	DisplayName                   string                         `json:"displayName,omitempty"`
	URL                           string                         `json:"url"`
	ETag                          string                         `json:"eTag"`
	LastModified                  time.Time                      `json:"lastModified"`
	CreationTime                  time.Time                      `json:"creationTime"`
	State                         string                         `json:"state"`
	StateTransitionTime           time.Time                      `json:"stateTransitionTime"`
	AllocationState               string                         `json:"allocationState"`
	AllocationStateTransitionTime time.Time                      `json:"allocationStateTransitionTime"`
	VMSize                        string                         `json:"vmSize"`
	VirtualMachineConfiguration   json.RawMessage                `json:"virtualMachineConfiguration,omitempty"`
	NetworkConfiguration          json.RawMessage                `json:"networkConfiguration,omitempty"`
	ResourceTags                  json.RawMessage                `json:"resourceTags,omitempty"`
	ResizeTimeout                 string                         `json:"resizeTimeout"`
	ResizeErrors                  []compute.ResizeError          `json:"resizeErrors,omitempty"`
	CurrentDedicatedNodes         int                            `json:"currentDedicatedNodes"`
	CurrentLowPriorityNodes       int                            `json:"currentLowPriorityNodes"`
	TargetDedicatedNodes          int                            `json:"targetDedicatedNodes"`
	TargetLowPriorityNodes        int                            `json:"targetLowPriorityNodes"`
	EnableAutoScale               bool                           `json:"enableAutoScale"`
	EnableInterNodeCommunication  bool                           `json:"enableInterNodeCommunication"`
	TaskSlotsPerNode              int                            `json:"taskSlotsPerNode"`
	TaskSchedulingPolicy          taskSchedulingPolicyIO         `json:"taskSchedulingPolicy"`
	StartTask                     *compute.StartTask             `json:"startTask,omitempty"`
	CertificateReferences         []compute.CertificateReference `json:"certificateReferences,omitempty"`
	Metadata                      []compute.NameValue            `json:"metadata,omitempty"`
	Identity                      *poolIdentityIO                `json:"identity,omitempty"`
	UserAccounts                  []userAccountOut               `json:"userAccounts,omitempty"`
}

// userAccountOut is a pool's user account as shown: never its password.
type userAccountOut struct {
	Name                   string          `json:"name"`
	ElevationLevel         string          `json:"elevationLevel,omitempty"`
	LinuxUserConfiguration json.RawMessage `json:"linuxUserConfiguration,omitempty"`
}

func (q *batchRequest) poolURL(id string) string { return q.baseURL() + "/pools/" + escapeID(id) }

func (b *batchData) poolBody(q *batchRequest, p *compute.Pool, withMetadata bool) poolOut {
	dedicated, low := 0, 0
	if ns, err := b.compute.Nodes(q.ctx, q.account.Name, p.ID); err == nil {
		for _, n := range ns {
			if n.IsDedicated {
				dedicated++
			} else {
				low++
			}
		}
	}
	out := poolOut{ID: p.ID, DisplayName: p.Spec.DisplayName, URL: q.poolURL(p.ID), ETag: p.ETag, LastModified: p.LastModified,
		CreationTime: p.CreatedAt, State: p.State, StateTransitionTime: p.StateTransitionTime, AllocationState: p.AllocationState,
		AllocationStateTransitionTime: p.AllocationTime, VMSize: p.VMSize, VirtualMachineConfiguration: p.Spec.VirtualMachineConfiguration,
		NetworkConfiguration: p.Spec.NetworkConfiguration, ResourceTags: p.Spec.ResourceTags,
		ResizeTimeout: isoDuration(p.ResizeTimeout), ResizeErrors: p.ResizeErrors,
		CurrentDedicatedNodes: dedicated, CurrentLowPriorityNodes: low, TargetDedicatedNodes: p.TargetDedicated, TargetLowPriorityNodes: p.TargetLowPriority,
		TaskSlotsPerNode: p.TaskSlotsPerNode, TaskSchedulingPolicy: taskSchedulingPolicyIO{p.NodeFillType},
		StartTask: p.Spec.StartTask, CertificateReferences: p.Certificates, Metadata: p.Spec.Metadata}
	for _, u := range p.Spec.UserAccounts {
		out.UserAccounts = append(out.UserAccounts, userAccountOut{Name: u.Name, ElevationLevel: u.ElevationLevel, LinuxUserConfiguration: redactSSHKey(u.LinuxUserConfiguration)})
	}
	if len(p.Identities) > 0 {
		// The principal and client ids of an identity are shown only to
		// callers that may read or assign it.
		caller, _ := custody.CallerFrom(q.ctx)
		ids := make([]compute.PoolIdentity, len(p.Identities))
		for i, id := range p.Identities {
			if ok, err := b.s.mayKnowIdentity(q.ctx, caller.ObjectID, id.ResourceID); err != nil || !ok {
				id.ClientID, id.PrincipalID = "", ""
			}
			ids[i] = id
		}
		out.Identity = &poolIdentityIO{Type: "UserAssigned", UserAssignedIdentities: ids}
	}
	if withMetadata {
		out.OData = q.metadata("pools/@Element")
	}
	return out
}

// isoDuration formats d as ISO 8601 (PT15M).
func isoDuration(d time.Duration) string {
	if d <= 0 {
		d = 15 * time.Minute
	}
	s := "PT"
	if h := int(d / time.Hour); h > 0 {
		s += strconv.Itoa(h) + "H"
		d -= time.Duration(h) * time.Hour
	}
	if m := int(d / time.Minute); m > 0 {
		s += strconv.Itoa(m) + "M"
		d -= time.Duration(m) * time.Minute
	}
	if d > 0 || s == "PT" {
		s += strconv.FormatFloat(d.Seconds(), 'f', -1, 64) + "S"
	}
	return s
}

// ParseISODuration parses an ISO 8601 duration such as PT1H30M, P1DT2S or
// PT0.5S.
func ParseISODuration(s string) (time.Duration, error) {
	bad := custody.Errorf(custody.KindInvalid, "InvalidPropertyValue", "%q is not an ISO 8601 duration (for example PT15M or P1DT2H).", s)
	up := strings.ToUpper(strings.TrimSpace(s))
	if !strings.HasPrefix(up, "P") || len(up) < 3 {
		return 0, bad
	}
	var d time.Duration
	inTime := false
	num := ""
	for _, c := range up[1:] {
		switch {
		case c == 'T':
			inTime = true
		case (c >= '0' && c <= '9') || c == '.':
			num += string(c)
		default:
			f, err := strconv.ParseFloat(num, 64)
			if err != nil || num == "" {
				return 0, bad
			}
			num = ""
			unit := map[rune]time.Duration{'D': 24 * time.Hour, 'W': 7 * 24 * time.Hour}
			if inTime {
				unit = map[rune]time.Duration{'H': time.Hour, 'M': time.Minute, 'S': time.Second}
			}
			u, ok := unit[c]
			if !ok {
				return 0, bad
			}
			if f > 1e7 {
				return time.Duration(1<<63 - 1), nil // "unlimited"
			}
			d += time.Duration(f * float64(u))
		}
	}
	if num != "" {
		return 0, bad
	}
	return d, nil
}

// authorizePoolIdentities checks the user-assigned identities a pool body
// names, before any is looked up: each must be an identity's resource id
// (400), and the caller must be allowed to assign each of them (403
// LinkedAuthorizationFailed), as for the account itself. The ids in the body
// are replaced by their canonical form, which is what is then resolved.
func (b *batchData) authorizePoolIdentities(q *batchRequest, in *poolIdentityIO) error {
	if in == nil || len(in.UserAssignedIdentities) == 0 {
		return nil
	}
	ids := make([]string, 0, len(in.UserAssignedIdentities))
	for i, id := range in.UserAssignedIdentities {
		canon, ok := rm.UserAssignedIdentityID(id.ResourceID)
		if !ok {
			return custody.Errorf(custody.KindInvalid, "InvalidPropertyValue",
				"'%s' in identity.userAssignedIdentities is not a user-assigned identity's resource id: use /subscriptions/{id}/resourceGroups/{group}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{name}.", id.ResourceID)
		}
		in.UserAssignedIdentities[i].ResourceID = canon
		ids = append(ids, canon)
	}
	caller, _ := custody.CallerFrom(q.ctx)
	return b.s.cfg.RM.AuthorizeAssign(q.ctx, caller.ObjectID, "Microsoft.Batch/batchAccounts/write", q.account.ID, ids)
}

// poolIdentities fills in the ids of a pool's user-assigned identities
// (already checked by authorizePoolIdentities).
func (b *batchData) poolIdentities(ctx context.Context, in *poolIdentityIO) ([]compute.PoolIdentity, error) {
	if in == nil || strings.EqualFold(in.Type, "None") || in.Type == "" {
		if in != nil && len(in.UserAssignedIdentities) > 0 && !strings.EqualFold(in.Type, "UserAssigned") {
			return nil, custody.Errorf(custody.KindInvalid, "InvalidPropertyValue", "identity.userAssignedIdentities needs identity.type UserAssigned.")
		}
		return nil, nil
	}
	if !strings.EqualFold(in.Type, "UserAssigned") {
		return nil, custody.Errorf(custody.KindInvalid, "InvalidPropertyValue", "identity.type %q is not valid for a pool: use UserAssigned or None (the account's system-assigned identity is not available on nodes).", in.Type)
	}
	if len(in.UserAssignedIdentities) == 0 {
		return nil, custody.Errorf(custody.KindInvalid, "InvalidPropertyValue", "identity.type UserAssigned needs at least one entry in userAssignedIdentities.")
	}
	var out []compute.PoolIdentity
	for _, id := range in.UserAssignedIdentities {
		u, err := b.compute.ResolveIdentity(ctx, id.ResourceID)
		if err != nil {
			return nil, err
		}
		out = append(out, u)
	}
	return out, nil
}

func (b *batchData) applyPoolIn(ctx context.Context, p *compute.Pool, in *poolIn, replace bool) error {
	if in.DisplayName != nil {
		p.Spec.DisplayName = *in.DisplayName
	}
	if in.StartTask != nil || replace {
		p.Spec.StartTask = in.StartTask
	}
	if in.Metadata != nil {
		p.Spec.Metadata = *in.Metadata
	} else if replace {
		p.Spec.Metadata = nil
	}
	if in.CertificateReferences != nil {
		p.Certificates = *in.CertificateReferences
	} else if replace {
		p.Certificates = nil
	}
	if in.Identity != nil {
		ids, err := b.poolIdentities(ctx, in.Identity)
		if err != nil {
			return err
		}
		p.Identities = ids
	}
	return nil
}

// newPool builds the pool a pool add (or an auto pool's specification)
// describes.
func (b *batchData) newPool(ctx context.Context, id string, in *poolIn) (*compute.Pool, error) {
	if in.EnableAutoScale != nil && *in.EnableAutoScale {
		return nil, custody.Errorf(custody.KindInvalid, "FeatureNotSupported", "Autoscale is not supported on this server; set targetDedicatedNodes and resize instead.")
	}
	p := &compute.Pool{ID: id, VMSize: in.VMSize, Spec: compute.PoolSpec{VirtualMachineConfiguration: in.VirtualMachineConfiguration,
		NetworkConfiguration: in.NetworkConfiguration, ResourceTags: in.ResourceTags}}
	if in.UserAccounts != nil {
		p.Spec.UserAccounts = *in.UserAccounts
	}
	if in.TargetDedicatedNodes != nil {
		p.TargetDedicated = *in.TargetDedicatedNodes
	}
	if in.TargetLowPriorityNodes != nil {
		p.TargetLowPriority = *in.TargetLowPriorityNodes
	}
	if in.TaskSlotsPerNode != nil {
		p.TaskSlotsPerNode = *in.TaskSlotsPerNode
	}
	if in.TaskSchedulingPolicy != nil {
		p.NodeFillType = in.TaskSchedulingPolicy.NodeFillType
	}
	if in.ResizeTimeout != nil {
		d, err := ParseISODuration(*in.ResizeTimeout)
		if err != nil {
			return nil, err
		}
		p.ResizeTimeout = d
	}
	if err := b.applyPoolIn(ctx, p, in, false); err != nil {
		return nil, err
	}
	return p, nil
}

func (b *batchData) addPool(q *batchRequest) error {
	var in poolIn
	if err := q.decode(&in); err != nil {
		return err
	}
	if err := b.authorizePoolIdentities(q, in.Identity); err != nil {
		return err
	}
	if in.ID == "" {
		return custody.Errorf(custody.KindInvalid, "MissingRequiredProperty", "The pool has no id.")
	}
	p, err := b.newPool(q.ctx, in.ID, &in)
	if err != nil {
		return err
	}
	if p, err = b.compute.CreatePool(q.ctx, q.account.Name, p); err != nil {
		return err
	}
	return q.created(p.ETag, p.LastModified, q.poolURL(p.ID))
}

func (b *batchData) getPool(q *batchRequest) error {
	p, err := b.compute.Pool(q.ctx, q.account.Name, q.segs[1])
	if err != nil {
		if q.r.Method == http.MethodHead && custody.IsNotFound(err) {
			q.w.WriteHeader(http.StatusNotFound)
			return nil
		}
		return err
	}
	if q.r.Method == http.MethodHead {
		q.entityHeaders(p.ETag, p.LastModified, "")
		q.w.WriteHeader(http.StatusOK)
		return nil
	}
	return q.writeEntity(b.poolBody(q, p, true), p.ETag, p.LastModified)
}

func (b *batchData) listPools(q *batchRequest) error {
	ps, err := b.compute.ListPools(q.ctx, q.account.Name)
	if err != nil {
		return err
	}
	items := make([]any, 0, len(ps))
	for _, p := range ps {
		items = append(items, b.poolBody(q, p, false))
	}
	return q.writeList("pools", items, "")
}

func (b *batchData) patchPool(q *batchRequest) error {
	var in poolIn
	if err := q.decode(&in); err != nil {
		return err
	}
	if err := b.authorizePoolIdentities(q, in.Identity); err != nil {
		return err
	}
	p, err := b.compute.UpdatePool(q.ctx, q.account.Name, q.segs[1], q.ifMatch(), func(p *compute.Pool) error {
		return b.applyPoolIn(q.ctx, p, &in, false)
	})
	if err != nil {
		return err
	}
	q.entityHeaders(p.ETag, p.LastModified, q.poolURL(p.ID))
	return q.noBody(http.StatusOK)
}

func (b *batchData) replacePoolProperties(q *batchRequest) error {
	var in poolIn
	if err := q.decode(&in); err != nil {
		return err
	}
	if err := b.authorizePoolIdentities(q, in.Identity); err != nil {
		return err
	}
	if in.CertificateReferences == nil || in.Metadata == nil {
		return custody.Errorf(custody.KindInvalid, "MissingRequiredProperty", "updateproperties replaces certificateReferences, applicationPackageReferences and metadata: all are required (send [] to clear).")
	}
	p, err := b.compute.UpdatePool(q.ctx, q.account.Name, q.segs[1], q.ifMatch(), func(p *compute.Pool) error {
		return b.applyPoolIn(q.ctx, p, &in, true)
	})
	if err != nil {
		return err
	}
	q.entityHeaders(p.ETag, p.LastModified, q.poolURL(p.ID))
	return q.noBody(http.StatusNoContent)
}

func (b *batchData) deletePool(q *batchRequest) error {
	if err := b.compute.DeletePool(q.ctx, q.account.Name, q.segs[1]); err != nil {
		return err
	}
	return q.noBody(http.StatusAccepted)
}

func (b *batchData) resizePool(q *batchRequest) error {
	var in struct {
		TargetDedicatedNodes   *int    `json:"targetDedicatedNodes"`
		TargetLowPriorityNodes *int    `json:"targetLowPriorityNodes"`
		ResizeTimeout          *string `json:"resizeTimeout"`
	}
	if err := q.decode(&in); err != nil {
		return err
	}
	p, err := b.compute.Pool(q.ctx, q.account.Name, q.segs[1])
	if err != nil {
		return err
	}
	d, l := p.TargetDedicated, p.TargetLowPriority
	if in.TargetDedicatedNodes != nil {
		d = *in.TargetDedicatedNodes
	}
	if in.TargetLowPriorityNodes != nil {
		l = *in.TargetLowPriorityNodes
	}
	var timeout time.Duration
	if in.ResizeTimeout != nil {
		if timeout, err = ParseISODuration(*in.ResizeTimeout); err != nil {
			return err
		}
	}
	if err := b.compute.Resize(q.ctx, q.account.Name, p.ID, q.ifMatch(), d, l, timeout); err != nil {
		return err
	}
	return q.noBody(http.StatusAccepted)
}

func (b *batchData) stopResize(q *batchRequest) error {
	if err := b.compute.StopResize(q.ctx, q.account.Name, q.segs[1], q.ifMatch()); err != nil {
		return err
	}
	return q.noBody(http.StatusAccepted)
}

func (b *batchData) removeNodes(q *batchRequest) error {
	var in struct {
		NodeList []string `json:"nodeList"`
	}
	if err := q.decode(&in); err != nil {
		return err
	}
	if err := b.compute.RemoveNodes(q.ctx, q.account.Name, q.segs[1], in.NodeList); err != nil {
		return err
	}
	return q.noBody(http.StatusAccepted)
}

// addNodeCredential registers a node for an agent that will join from
// elsewhere and returns its credential (stored only hashed).
func (b *batchData) addNodeCredential(q *batchRequest) error {
	id, cred, err := b.compute.AddRemoteNode(q.ctx, q.account.Name, q.segs[1])
	if err != nil {
		return err
	}
	writeJSON(q.w, http.StatusCreated, map[string]string{"nodeId": id, "credential": cred,
		"server": "https://batch." + b.s.cfg.Domain + ":" + strconv.Itoa(b.s.cfg.Port)})
	return nil
}

// ---- nodes ----

type nodeOut struct {
	Metadata              string                 `json:"odata.metadata,omitempty"`
	ID                    string                 `json:"id"`
	URL                   string                 `json:"url"`
	State                 string                 `json:"state"`
	SchedulingState       string                 `json:"schedulingState"`
	StateTransitionTime   time.Time              `json:"stateTransitionTime"`
	LastBootTime          *time.Time             `json:"lastBootTime,omitempty"`
	AllocationTime        time.Time              `json:"allocationTime"`
	IPAddress             string                 `json:"ipAddress,omitempty"`
	AffinityID            string                 `json:"affinityId"`
	VMSize                string                 `json:"vmSize"`
	TotalTasksRun         int                    `json:"totalTasksRun"`
	RunningTasksCount     int                    `json:"runningTasksCount"`
	RunningTaskSlotsCount int                    `json:"runningTaskSlotsCount"`
	TotalTasksSucceeded   int                    `json:"totalTasksSucceeded"`
	RecentTasks           []recentTaskOut        `json:"recentTasks,omitempty"`
	StartTaskInfo         *compute.StartTaskInfo `json:"startTaskInfo,omitempty"`
	Errors                []compute.NodeError    `json:"errors,omitempty"`
	IsDedicated           bool                   `json:"isDedicated"`
	NodeAgentInfo         struct {
		Version        string    `json:"version"`
		LastUpdateTime time.Time `json:"lastUpdateTime"`
	} `json:"nodeAgentInfo"`
}

type recentTaskOut struct {
	TaskURL   string `json:"taskUrl"`
	JobID     string `json:"jobId"`
	TaskID    string `json:"taskId"`
	TaskState string `json:"taskState"`
}

func (q *batchRequest) nodeURL(pool, id string) string {
	return q.poolURL(pool) + "/nodes/" + escapeID(id)
}

func (q *batchRequest) nodeBody(n *compute.Node, withMetadata bool) nodeOut {
	out := nodeOut{ID: n.ID, URL: q.nodeURL(n.PoolID, n.ID), State: n.State, SchedulingState: "enabled", StateTransitionTime: n.StateTransitionTime,
		LastBootTime: optTime(n.LastBootTime), AllocationTime: n.AllocationTime, IPAddress: n.IPAddress, AffinityID: "TVM:" + n.ID, VMSize: n.VMSize,
		TotalTasksRun: n.TotalTasksRun, RunningTasksCount: n.RunningTasks, RunningTaskSlotsCount: n.RunningSlots, TotalTasksSucceeded: n.TotalTasksSucceeded,
		StartTaskInfo: n.StartTask, Errors: n.Errors, IsDedicated: n.IsDedicated}
	if !n.SchedulingEnabled {
		out.SchedulingState = "disabled"
	}
	out.NodeAgentInfo.Version, out.NodeAgentInfo.LastUpdateTime = n.AgentVersion, n.LastBootTime
	for _, t := range n.RecentTasks {
		out.RecentTasks = append(out.RecentTasks, recentTaskOut{TaskURL: q.taskURL(t.JobID, t.TaskID), JobID: t.JobID, TaskID: t.TaskID, TaskState: t.State})
	}
	if withMetadata {
		out.Metadata = q.metadata("nodes/@Element")
	}
	return out
}

func (b *batchData) listNodes(q *batchRequest) error {
	ns, err := b.compute.Nodes(q.ctx, q.account.Name, q.segs[1])
	if err != nil {
		return err
	}
	items := make([]any, 0, len(ns))
	for _, n := range ns {
		items = append(items, q.nodeBody(n, false))
	}
	return q.writeList("nodes", items, "")
}

func (b *batchData) getNode(q *batchRequest) error {
	n, err := b.compute.GetNode(q.ctx, q.account.Name, q.segs[1], q.segs[3])
	if err != nil {
		return err
	}
	return q.writeEntity(q.nodeBody(n, true), "", time.Time{})
}

func (b *batchData) rebootNode(q *batchRequest) error {
	if err := b.compute.RebootNode(q.ctx, q.account.Name, q.segs[1], q.segs[3]); err != nil {
		return err
	}
	return q.noBody(http.StatusAccepted)
}

func (b *batchData) nodeCounts(q *batchRequest) error {
	ps, err := b.compute.ListPools(q.ctx, q.account.Name)
	if err != nil {
		return err
	}
	items := make([]any, 0, len(ps))
	for _, p := range ps {
		ns, err := b.compute.Nodes(q.ctx, q.account.Name, p.ID)
		if err != nil {
			return err
		}
		counts := map[string]int{}
		for _, n := range ns {
			counts[n.State]++
		}
		c := map[string]int{"total": len(ns)}
		for _, k := range []string{"creating", "idle", "offline", "preempted", "rebooting", "reimaging", "running", "starting", "startTaskFailed",
			"leavingPool", "unknown", "unusable", "waitingForStartTask", "deallocated", "deallocating", "upgradingOS"} {
			c[k] = counts[strings.ToLower(k)]
		}
		items = append(items, map[string]any{"poolId": p.ID, "dedicated": c, "lowPriority": map[string]int{"total": 0}})
	}
	return q.writeList("poolnodecounts", items, "")
}

// ---- files ----

type nodeFileOut struct {
	Name        string            `json:"name"`
	URL         string            `json:"url"`
	IsDirectory bool              `json:"isDirectory"`
	Properties  *nodeFilePropsOut `json:"properties,omitempty"`
}

type nodeFilePropsOut struct {
	CreationTime  time.Time `json:"creationTime"`
	LastModified  time.Time `json:"lastModified"`
	ContentLength string    `json:"contentLength"`
	ContentType   string    `json:"contentType"`
	FileMode      string    `json:"fileMode"`
}

func (b *batchData) nodeFile(q *batchRequest) error {
	rel := strings.Join(q.segs[5:], "/")
	if first, _, _ := strings.Cut(strings.TrimLeft(path.Clean("/"+rel), "/"), "/"); strings.EqualFold(first, "certs") {
		return certificateFilesRefused(first)
	}
	ask := func(fr node.FileRequest) (*compute.FileAnswer, error) {
		return b.compute.NodeFile(q.ctx, q.account.Name, q.segs[1], q.segs[3], fr)
	}
	return b.proxyFile(q, ask, rel, false, q.nodeURL(q.segs[1], q.segs[3])+"/files")
}

// certificateFilesRefused answers a request for the certificates
// directory, which the file API never serves (nor lists), whatever the
// node's agent does: certificates and their passwords are read through the
// certificate API only, which hides both.
func certificateFilesRefused(name string) error {
	return custody.Errorf(custody.KindForbidden, "FileAccessDenied", "%q holds the pool's certificates, which node and task file APIs never serve.", name)
}

func (b *batchData) taskFile(q *batchRequest) error {
	if _, err := b.data.GetTask(q.ctx, q.account.Name, q.segs[1], q.segs[3]); err != nil {
		return err
	}
	ask := func(fr node.FileRequest) (*compute.FileAnswer, error) {
		ans, err := b.compute.TaskFile(q.ctx, q.account.Name, q.segs[1], q.segs[3], fr)
		if errors.Is(err, compute.ErrNoNode) {
			return nil, custody.Errorf(custody.KindConflict, "TaskNotStarted", "The task %q has not run on a node yet, so it has no files.", q.segs[3])
		}
		return ans, err
	}
	rel := strings.Join(q.segs[5:], "/")
	return b.proxyFile(q, ask, rel, true, q.taskURL(q.segs[1], q.segs[3])+"/files")
}

// maxListing bounds a node's directory listing.
const maxListing = 16 << 20

// proxyFile reads a file or directory listing, or deletes one, through the
// node channel (ask sends the request to the node's agent; the server never
// connects to the node). For task files (task) the agent serves nothing
// outside the task's directory, and names in listings are relative to it.
func (b *batchData) proxyFile(q *batchRequest, ask func(node.FileRequest) (*compute.FileAnswer, error), rel string, task bool, listURL string) error {
	if strings.Contains("/"+rel+"/", "/../") {
		return custody.Errorf(custody.KindInvalid, "InvalidUri", "The file path %q may not contain '..'.", rel)
	}
	method := q.r.Method
	if rel == "" {
		method = http.MethodGet
	}
	resp, err := ask(node.FileRequest{Method: method, Path: rel, Recursive: q.r.URL.Query().Get("recursive") == "true", Range: q.r.Header.Get("ocp-range")})
	if err != nil {
		return err
	}
	defer resp.Close()
	switch {
	case resp.Status == http.StatusNotFound:
		return custody.Errorf(custody.KindNotFound, "FileNotFound", "The specified file %q does not exist.", rel)
	case resp.Status == http.StatusForbidden:
		where := "the node's root directory"
		if task {
			where = "the task's directory"
		}
		return custody.Errorf(custody.KindForbidden, "FileAccessDenied", "The file %q is not served: it leads outside %s through a symbolic link, or it is certificate material.", rel, where)
	case resp.Status == http.StatusConflict:
		return custody.Errorf(custody.KindConflict, "FileIsDirectory", "%q is a directory; add recursive=true to delete it.", rel)
	case resp.Status >= 300 || resp.Status < 200:
		return custody.Errorf(custody.KindUnavailable, "NodeFileError", "The node could not serve the file (status %d).", resp.Status)
	}
	if q.r.Method == http.MethodDelete {
		return q.noBody(http.StatusOK)
	}
	if resp.Directory {
		if rel != "" && q.r.Method != http.MethodHead {
			return custody.Errorf(custody.KindInvalid, "FileIsDirectory", "%q is a directory; list it with the files listing and recursive=true.", rel)
		}
		var l node.FileListing
		if err := json.NewDecoder(io.LimitReader(resp.Body, maxListing)).Decode(&l); err != nil {
			return custody.Errorf(custody.KindUnavailable, "NodeFileError", "The node's listing of %q could not be read; retry shortly.", rel)
		}
		if q.r.Method == http.MethodHead {
			q.w.Header().Set("ocp-batch-file-isdirectory", "true")
			q.w.WriteHeader(http.StatusOK)
			return nil
		}
		items := make([]any, 0, len(l.Files))
		for _, f := range l.Files {
			if !task && rel == "" && (strings.EqualFold(f.Name, "certs") || strings.HasPrefix(strings.ToLower(f.Name), "certs/")) {
				continue
			}
			name := f.Name
			if rel != "" {
				name = rel + "/" + f.Name
			}
			item := nodeFileOut{Name: name, URL: listURL + "/" + escapePath(name), IsDirectory: f.IsDirectory}
			item.Properties = &nodeFilePropsOut{CreationTime: f.Modified, LastModified: f.Modified, ContentLength: strconv.FormatInt(f.Size, 10), ContentType: "application/octet-stream", FileMode: f.Mode}
			if f.IsDirectory {
				item.Properties.ContentLength = "0"
			}
			items = append(items, item)
		}
		return q.writeList("files", items, "")
	}
	if resp.ContentLength < 0 {
		return custody.Errorf(custody.KindUnavailable, "NodeFileError", "The node did not say how long %q is; retry shortly.", rel)
	}
	h := q.w.Header()
	mod := resp.LastModified
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Content-Length", strconv.FormatInt(resp.ContentLength, 10))
	h.Set("Last-Modified", mod)
	h.Set("ocp-creation-time", mod)
	h.Set("ocp-batch-file-isdirectory", "false")
	h.Set("ocp-batch-file-url", listURL+"/"+escapePath(rel))
	h.Set("ocp-batch-file-mode", resp.Mode)
	status := http.StatusOK
	if resp.Status == http.StatusPartialContent {
		status = http.StatusPartialContent
		h.Set("Content-Range", resp.ContentRange)
	}
	q.w.WriteHeader(status)
	if q.r.Method != http.MethodHead {
		// Never more than the reply declared.
		_, _ = io.Copy(q.w, io.LimitReader(resp.Body, resp.ContentLength))
	}
	return nil
}

func escapePath(p string) string {
	parts := strings.Split(p, "/")
	for i, s := range parts {
		parts[i] = url.PathEscape(s)
	}
	return strings.Join(parts, "/")
}

// ---- the node channel (batch.{domain}) ----

// nodeChannel serves node agents: join, sync, report, token, files.
type nodeChannel struct{ c *compute.Service }

func nodeCredential(r *http.Request) string {
	h := r.Header.Get("Authorization")
	if len(h) > len(node.CredentialScheme)+1 && strings.EqualFold(h[:len(node.CredentialScheme)], node.CredentialScheme) {
		return strings.TrimSpace(h[len(node.CredentialScheme)+1:])
	}
	return ""
}

// replyIdle is how long an agent's file reply may stall between reads.
const replyIdle = time.Minute

// replyBody reads an agent's file reply. The reply is read only as fast as
// the data-plane client takes it, so instead of the server's read timeout
// for the whole request it bounds each read: a stall of replyIdle ends it.
type replyBody struct {
	r  io.Reader
	rc *http.ResponseController
}

func (b *replyBody) Read(p []byte) (int, error) {
	_ = b.rc.SetReadDeadline(time.Now().Add(replyIdle))
	return b.r.Read(p)
}

func (nc *nodeChannel) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		writeError(w, r, custody.Errorf(custody.KindMethodNotAllowed, "MethodNotAllowed", "The node channel takes POST only."))
		return
	}
	cred := nodeCredential(r)
	var out any
	var err error
	switch strings.ToLower(r.URL.Path) {
	case "/node/v1/files":
		var reply node.FileReply
		if err = json.Unmarshal([]byte(r.Header.Get(node.FileReplyHeader)), &reply); err != nil || reply.ID == "" {
			err = custody.Errorf(custody.KindInvalid, "InvalidFileReply", "POST /node/v1/files needs the %s header: a JSON file reply with the request's id.", node.FileReplyHeader)
			break
		}
		err = nc.c.FileReply(r.Context(), cred, reply, &replyBody{r: r.Body, rc: http.NewResponseController(w)})
	case "/node/v1/join":
		var in node.JoinRequest
		if err = decodeJSON(r, &in); err == nil {
			out, err = nc.c.Join(r.Context(), cred, in)
		}
	case "/node/v1/sync":
		var in node.SyncRequest
		if err = decodeJSON(r, &in); err == nil {
			out, err = nc.c.Sync(r.Context(), cred, in)
		}
	case "/node/v1/report":
		var in node.ReportRequest
		if err = decodeJSON(r, &in); err == nil {
			err = nc.c.Report(r.Context(), cred, in)
		}
	case "/node/v1/token":
		var in node.TokenRequest
		if err = decodeJSON(r, &in); err == nil {
			out, err = nc.c.Token(r.Context(), cred, in)
		}
	default:
		err = custody.Errorf(custody.KindNotFound, "NotFound", "batch.{domain} serves the node channel only (/node/v1/join, sync, report, token, files); account data planes are at {account}.batch.{domain}.")
	}
	if err != nil {
		if r.Context().Err() != nil {
			// The agent went away, or the server is closing its
			// connections: nobody reads an answer, and it is no fault.
			err = custody.Errorf(custody.KindUnavailable, "ServerBusy", "The request ended before an answer was ready; sync again.")
		}
		writeError(w, r, err)
		return
	}
	if out == nil {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// taskRunOut is the part of a task's executionInfo the compute service
// knows: its last run's exit code, result and failure.
type taskRunOut struct {
	ExitCode        *int            `json:"exitCode,omitempty"`
	Result          string          `json:"result,omitempty"`
	FailureInfo     *failureInfoOut `json:"failureInfo,omitempty"`
	LastRetryTime   *time.Time      `json:"lastRetryTime,omitempty"`
	LastRequeueTime *time.Time      `json:"lastRequeueTime,omitempty"`
}

type failureInfoOut struct {
	Category string `json:"category"`
	Code     string `json:"code"`
	Message  string `json:"message"`
}

type taskNodeInfoOut struct {
	AffinityID           string `json:"affinityId"`
	NodeURL              string `json:"nodeUrl"`
	PoolID               string `json:"poolId"`
	NodeID               string `json:"nodeId"`
	TaskRootDirectory    string `json:"taskRootDirectory"`
	TaskRootDirectoryURL string `json:"taskRootDirectoryUrl"`
}

// addTaskRun adds the outcome of a task's last run, as stored with the
// task.
func (q *batchRequest) addTaskRun(out *taskOut, t *batch.Task) {
	e := t.Outcome
	r := &out.ExecutionInfo.taskRunOut
	r.ExitCode, r.Result = e.ExitCode, e.Result
	if e.FailureCode != "" {
		r.FailureInfo = &failureInfoOut{Category: "usererror", Code: e.FailureCode, Message: t.FailureMessage}
	}
	r.LastRetryTime, r.LastRequeueTime = optTime(e.LastRetryTime), optTime(e.LastRequeueTime)
	if e.NodeID != "" {
		dir := "workitems/" + t.JobID + "/job-1/" + t.ID
		out.NodeInfo = &taskNodeInfoOut{AffinityID: "TVM:" + e.NodeID, NodeURL: q.nodeURL(e.PoolID, e.NodeID), PoolID: e.PoolID, NodeID: e.NodeID,
			TaskRootDirectory: dir, TaskRootDirectoryURL: q.nodeURL(e.PoolID, e.NodeID) + "/files/" + escapePath(dir)}
	}
}

// redactSSHKey drops sshPrivateKey from a linuxUserConfiguration (Azure
// never returns it).
func redactSSHKey(raw json.RawMessage) json.RawMessage {
	if len(raw) == 0 {
		return nil
	}
	var m map[string]json.RawMessage
	if json.Unmarshal(raw, &m) != nil {
		return nil
	}
	delete(m, "sshPrivateKey")
	b, _ := json.Marshal(m)
	return b
}
