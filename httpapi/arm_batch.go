package httpapi

import (
	"context"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"custody"
	"custody/batch"
	"custody/rm"
)

// RBAC actions of the batch account operations.
const (
	actionBatchAccountRead   = "Microsoft.Batch/batchAccounts/read"
	actionBatchAccountWrite  = "Microsoft.Batch/batchAccounts/write"
	actionBatchAccountDelete = "Microsoft.Batch/batchAccounts/delete"
	actionBatchListKeys      = "Microsoft.Batch/batchAccounts/listkeys/action"
	actionBatchRegenerateKey = "Microsoft.Batch/batchAccounts/regeneratekeys/action"
	// actionBatchReencrypt is a Custody extension: re-encrypt the
	// account's data under a new data key.
	actionBatchReencrypt = "Microsoft.Batch/batchAccounts/reencrypt/action"
)

// batchRetryAfterMs is the poll delay the accepted answers of account
// create, update and delete suggest. The work is done before the answer, so
// the first poll already sees the outcome.
const batchRetryAfterMs = "100"

// batchARM serves Microsoft.Batch/batchAccounts; every handler only
// translates between the wire and batch.Service.
type batchARM struct {
	a   *ARM
	svc *batch.Service
}

// RegisterBatchAccounts adds the batch account routes: create (PUT, a
// long-running operation answered 202 with a Location), read, update
// (PATCH), delete (202 with a Location), the two lists, and the operation
// results the Location points at.
func (s *Server) RegisterBatchAccounts(svc *batch.Service) {
	h := &batchARM{a: s.arm, svc: svc}
	a := s.arm
	const sub = "/subscriptions/{subscriptionId}"
	const group = sub + "/resourceGroups/{resourceGroupName}/providers/Microsoft.Batch/batchAccounts"
	const one = group + "/{accountName}"
	v := batchAPIVersions
	a.Handle(ARMRoute{Method: "PUT", Path: one, APIVersions: v, Action: actionBatchAccountWrite, Handler: h.put})
	a.Handle(ARMRoute{Method: "PATCH", Path: one, APIVersions: v, Action: actionBatchAccountWrite, Handler: h.patch})
	a.Handle(ARMRoute{Method: "GET", Path: one, APIVersions: v, Action: actionBatchAccountRead, Handler: h.get})
	a.Handle(ARMRoute{Method: "DELETE", Path: one, APIVersions: v, Action: actionBatchAccountDelete, Handler: h.delete})
	// The shared keys of the data plane (az batch account keys list/renew,
	// az batch account login --shared-key-auth).
	a.Handle(ARMRoute{Method: "POST", Path: one + "/listKeys", APIVersions: v, Action: actionBatchListKeys, Handler: h.listKeys})
	a.Handle(ARMRoute{Method: "POST", Path: one + "/regenerateKeys", APIVersions: v, Action: actionBatchRegenerateKey, Handler: h.regenerateKeys})
	// Re-encryption of the account's data under a new data key (a Custody
	// extension), a long-running operation.
	a.Handle(ARMRoute{Method: "POST", Path: one + "/reencrypt", APIVersions: v, Action: actionBatchReencrypt, Handler: h.reencrypt})
	// Lists keep the accounts the caller may read, so that a role on one
	// account lets the caller list it.
	a.Handle(ARMRoute{Method: "GET", Path: group, APIVersions: v, Handler: h.list})
	a.Handle(ARMRoute{Method: "GET", Path: sub + "/providers/Microsoft.Batch/batchAccounts", APIVersions: v, Handler: h.list})
	// The operation result checks the caller against the operation's
	// account (operationResult).
	a.Handle(ARMRoute{Method: "GET", Path: sub + "/providers/Microsoft.Batch/locations/{locationName}/operationResults/{operationId}", APIVersions: allVersions(), Handler: h.operationResult})
}

// Wire shapes (armbatch/v3 v3.0.1 models).

type batchUserIdentity struct {
	PrincipalID string `json:"principalId,omitempty"`
	ClientID    string `json:"clientId,omitempty"`
}

type batchIdentityOut struct {
	Type                   string                       `json:"type"`
	PrincipalID            string                       `json:"principalId,omitempty"`
	TenantID               string                       `json:"tenantId,omitempty"`
	UserAssignedIdentities map[string]batchUserIdentity `json:"userAssignedIdentities,omitempty"`
}

type batchIdentityIn struct {
	Type                   *string        `json:"type"`
	UserAssignedIdentities map[string]any `json:"userAssignedIdentities"`
}

type batchKeyVaultProps struct {
	KeyIdentifier *string `json:"keyIdentifier"`
}

type batchEncryptionIn struct {
	KeySource          *string             `json:"keySource"`
	KeyVaultProperties *batchKeyVaultProps `json:"keyVaultProperties"`
}

type batchEncryptionOut struct {
	KeySource          string `json:"keySource"`
	KeyVaultProperties *struct {
		KeyIdentifier string `json:"keyIdentifier"`
	} `json:"keyVaultProperties,omitempty"`
}

// batchEncryptionStatus is not part of Azure's API: it says whether the
// account can reach its key, since when, why not, and which key version (or
// platform key) wraps the account's data key now. It is readable whatever
// the state of the key.
type batchEncryptionStatus struct {
	State           string `json:"state"`
	Reason          string `json:"reason,omitempty"`
	Since           string `json:"since,omitempty"`
	KeyVersionInUse string `json:"keyVersionInUse,omitempty"`
	LastKeyCheck    string `json:"lastKeyCheck,omitempty"`
}

type batchVMFamilyQuota struct {
	Name      string `json:"name"`
	CoreQuota int32  `json:"coreQuota"`
}

type batchAccountProps struct {
	AccountEndpoint                       string                `json:"accountEndpoint"`
	NodeManagementEndpoint                string                `json:"nodeManagementEndpoint"`
	ProvisioningState                     string                `json:"provisioningState"`
	PoolAllocationMode                    string                `json:"poolAllocationMode"`
	PublicNetworkAccess                   string                `json:"publicNetworkAccess"`
	Encryption                            batchEncryptionOut    `json:"encryption"`
	EncryptionStatus                      batchEncryptionStatus `json:"encryptionStatus"`
	AllowedAuthenticationModes            []string              `json:"allowedAuthenticationModes"`
	DedicatedCoreQuota                    int32                 `json:"dedicatedCoreQuota"`
	LowPriorityCoreQuota                  int32                 `json:"lowPriorityCoreQuota"`
	DedicatedCoreQuotaPerVMFamily         []batchVMFamilyQuota  `json:"dedicatedCoreQuotaPerVMFamily"`
	DedicatedCoreQuotaPerVMFamilyEnforced bool                  `json:"dedicatedCoreQuotaPerVMFamilyEnforced"`
	PoolQuota                             int32                 `json:"poolQuota"`
	ActiveJobAndJobScheduleQuota          int32                 `json:"activeJobAndJobScheduleQuota"`
	PrivateEndpointConnections            []any                 `json:"privateEndpointConnections"`
	// Reencryption is not part of Azure's API: the account's last
	// re-encryption under a new data key.
	Reencryption *batchReencryptionOut `json:"reencryption,omitempty"`
}

// batchReencryptionOut is the state of a re-encryption (a Custody
// extension). Status is InProgress, Paused (the account's key is
// inaccessible; it resumes after the unlock) or Succeeded.
type batchReencryptionOut struct {
	Status           string `json:"status"`
	RecordsDone      int64  `json:"recordsDone"`
	RecordsTotal     int64  `json:"recordsTotal"`
	PercentComplete  int    `json:"percentComplete"`
	StartTime        string `json:"startTime"`
	EstimatedEndTime string `json:"estimatedEndTime,omitempty"`
	EndTime          string `json:"endTime,omitempty"`
	FromGeneration   uint32 `json:"fromDataKeyGeneration"`
	ToGeneration     uint32 `json:"toDataKeyGeneration"`
	Error            string `json:"error,omitempty"`
}

func reencryptionOut(a *batch.Account, now time.Time) *batchReencryptionOut {
	r := a.Reencryption
	if r == nil {
		return nil
	}
	out := &batchReencryptionOut{Status: r.Status, RecordsDone: r.RecordsDone, RecordsTotal: r.RecordsTotal,
		StartTime: armTimeOrEmpty(r.StartTime), EndTime: armTimeOrEmpty(r.EndTime),
		FromGeneration: r.From, ToGeneration: r.To, Error: r.Error, PercentComplete: 100}
	if r.Status == batch.ReencryptionInProgress {
		out.PercentComplete = 0
		if r.RecordsTotal > 0 {
			out.PercentComplete = int(min(99, r.RecordsDone*100/r.RecordsTotal))
		}
		out.EstimatedEndTime = armTimeOrEmpty(r.EstimatedEnd(now))
		if a.Key.State == batch.KeyInaccessible {
			out.Status, out.EstimatedEndTime = "Paused", ""
		}
	}
	return out
}

type batchAccountOut struct {
	ID         string            `json:"id"`
	Name       string            `json:"name"`
	Type       string            `json:"type"`
	Location   string            `json:"location"`
	Tags       map[string]string `json:"tags,omitempty"`
	Identity   batchIdentityOut  `json:"identity"`
	Properties batchAccountProps `json:"properties"`
}

type batchAccountIn struct {
	Location   *string           `json:"location"`
	Tags       map[string]string `json:"tags"`
	Identity   *batchIdentityIn  `json:"identity"`
	Properties *struct {
		PoolAllocationMode         *string            `json:"poolAllocationMode"`
		PublicNetworkAccess        *string            `json:"publicNetworkAccess"`
		Encryption                 *batchEncryptionIn `json:"encryption"`
		AllowedAuthenticationModes []string           `json:"allowedAuthenticationModes"`
		AutoStorage                any                `json:"autoStorage"`
		KeyVaultReference          any                `json:"keyVaultReference"`
		NetworkProfile             any                `json:"networkProfile"`
	} `json:"properties"`
}

func armTimeOrEmpty(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

func (h *batchARM) body(a *batch.Account) batchAccountOut {
	out := batchAccountOut{ID: a.ID, Name: a.Name, Type: "Microsoft.Batch/batchAccounts", Location: a.Location, Tags: a.Tags}
	out.Identity = batchIdentityOut{Type: a.Identity.Type}
	if out.Identity.Type == "" {
		out.Identity.Type = batch.IdentityNone
	}
	if a.Identity.Type == batch.IdentitySystemAssigned {
		out.Identity.PrincipalID, out.Identity.TenantID = a.Identity.PrincipalID, a.Identity.TenantID
	}
	if len(a.Identity.UserAssigned) > 0 {
		out.Identity.UserAssignedIdentities = map[string]batchUserIdentity{}
		for rid, u := range a.Identity.UserAssigned {
			out.Identity.UserAssignedIdentities[rid] = batchUserIdentity{PrincipalID: u.PrincipalID, ClientID: u.ClientID}
		}
	}
	p := &out.Properties
	p.AccountEndpoint = h.svc.AccountEndpoint(a.Name)
	p.NodeManagementEndpoint = p.AccountEndpoint
	p.ProvisioningState = a.ProvisioningState
	if p.ProvisioningState == "" {
		p.ProvisioningState = "Succeeded"
	}
	p.PoolAllocationMode, p.PublicNetworkAccess = a.PoolAllocationMode, a.PublicNetworkAccess
	p.Encryption.KeySource = a.Encryption.KeySource
	if p.Encryption.KeySource == "" {
		p.Encryption.KeySource = batch.KeySourceBatch
	}
	if a.Encryption.KeyIdentifier != "" {
		p.Encryption.KeyVaultProperties = &struct {
			KeyIdentifier string `json:"keyIdentifier"`
		}{a.Encryption.KeyIdentifier}
	}
	st := a.Key.State
	if st == "" {
		st = batch.KeyAvailable
	}
	p.EncryptionStatus = batchEncryptionStatus{State: st, Reason: a.Key.Reason, Since: armTimeOrEmpty(a.Key.Since),
		KeyVersionInUse: a.Key.Wrapped.KeyID, LastKeyCheck: armTimeOrEmpty(a.Key.LastProbe)}
	p.AllowedAuthenticationModes = a.Modes()
	q := a.Quotas()
	p.DedicatedCoreQuota, p.LowPriorityCoreQuota = int32(q.DedicatedCores), int32(q.LowPriorityCores)
	p.DedicatedCoreQuotaPerVMFamily = []batchVMFamilyQuota{}
	p.DedicatedCoreQuotaPerVMFamilyEnforced = false
	p.PoolQuota, p.ActiveJobAndJobScheduleQuota = int32(q.Pools), int32(q.ActiveJobsAndSchedules)
	p.PrivateEndpointConnections = []any{}
	p.Reencryption = reencryptionOut(a, time.Now())
	return out
}

// authorizeAssign checks that the caller may attach each user-assigned
// identity of ident to the account id (LinkedAuthorizationFailed otherwise),
// before any identity is looked up.
func (h *batchARM) authorizeAssign(r *ARMRequest, id string, ident *batch.AccountIdentity) error {
	if ident == nil || len(ident.UserAssigned) == 0 {
		return nil
	}
	ids := make([]string, 0, len(ident.UserAssigned))
	for rid := range ident.UserAssigned {
		ids = append(ids, rid)
	}
	sort.Strings(ids)
	return h.a.s.cfg.RM.AuthorizeAssign(r.Context(), r.Caller.ObjectID, actionBatchAccountWrite, id, ids)
}

// bodyFor is body as the caller may see it: the principal and client ids of
// a user-assigned identity are shown only to callers that may read or
// assign that identity.
func (h *batchARM) bodyFor(r *ARMRequest, a *batch.Account) (batchAccountOut, error) {
	out := h.body(a)
	for rid, u := range out.Identity.UserAssignedIdentities {
		ok, err := h.a.s.mayKnowIdentity(r.Context(), r.Caller.ObjectID, rid)
		if err != nil {
			return out, err
		}
		if !ok {
			u.PrincipalID, u.ClientID = "", ""
			out.Identity.UserAssignedIdentities[rid] = u
		}
	}
	return out, nil
}

// accountID is the resource id the request names, in Azure's casing.
func accountID(r *ARMRequest, rg string) string {
	return rm.ResourceID(r.Param("subscriptionId"), rg, "Microsoft.Batch", "batchAccounts", r.Param("accountName"))
}

// account returns the account the request names. The resource group must
// exist (ResourceGroupNotFound) and hold the account (ResourceNotFound).
func (h *batchARM) account(r *ARMRequest) (*batch.Account, error) {
	g, err := h.a.s.cfg.RM.ResourceGroup(r.Context(), r.Param("subscriptionId"), r.Param("resourceGroupName"))
	if err != nil {
		return nil, err
	}
	name := r.Param("accountName")
	a, err := h.svc.Account(r.Context(), name)
	switch {
	case err == nil && strings.EqualFold(a.ID, accountID(r, g.Name)):
		return a, nil
	case err == nil || custody.IsNotFound(err):
		// An account of that name in another group is not this resource.
		return nil, custody.Errorf(custody.KindNotFound, "ResourceNotFound",
			"The Resource 'Microsoft.Batch/batchAccounts/%s' under resource group '%s' was not found. Check the name, or list the group's accounts (custody batch account list -g %s).", name, g.Name, g.Name)
	}
	return nil, err
}

// canonical returns the allowed value that equals v ignoring case, or v.
func canonical(v string, allowed ...string) string {
	for _, a := range allowed {
		if strings.EqualFold(strings.TrimSpace(v), a) {
			return a
		}
	}
	return v
}

// normalizeLocation turns a region's display name ("West US 2") into its
// name ("westus2"), as ARM does.
func normalizeLocation(l string) string {
	return strings.ToLower(strings.ReplaceAll(strings.TrimSpace(l), " ", ""))
}

func toIdentity(in *batchIdentityIn) (*batch.AccountIdentity, error) {
	if in == nil {
		return nil, nil
	}
	id := &batch.AccountIdentity{Type: batch.IdentityNone}
	if in.Type != nil {
		id.Type = canonical(*in.Type, batch.IdentityNone, batch.IdentitySystemAssigned, batch.IdentityUserAssigned)
	}
	switch id.Type {
	case batch.IdentityNone, batch.IdentitySystemAssigned, batch.IdentityUserAssigned:
	default:
		return nil, custody.Errorf(custody.KindInvalid, "InvalidIdentityType",
			"identity.type '%s' is not valid for a batch account: use None, SystemAssigned or UserAssigned ('SystemAssigned, UserAssigned' is not supported by batch accounts).", *in.Type)
	}
	if len(in.UserAssignedIdentities) > 0 {
		id.UserAssigned = map[string]batch.UserAssignedIdentity{}
		for rid := range in.UserAssignedIdentities {
			canon, ok := rm.UserAssignedIdentityID(rid)
			if !ok {
				return nil, custody.Errorf(custody.KindInvalid, "InvalidIdentity",
					"'%s' in identity.userAssignedIdentities is not a user-assigned identity's resource id: use /subscriptions/{id}/resourceGroups/{group}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{name}.", rid)
			}
			id.UserAssigned[canon] = batch.UserAssignedIdentity{}
		}
	}
	return id, nil
}

func toEncryption(in *batchEncryptionIn) (*batch.Encryption, error) {
	if in == nil {
		return nil, nil
	}
	enc := &batch.Encryption{}
	if in.KeyVaultProperties != nil && in.KeyVaultProperties.KeyIdentifier != nil {
		enc.KeyIdentifier = strings.TrimSpace(*in.KeyVaultProperties.KeyIdentifier)
	}
	switch {
	case in.KeySource != nil && strings.TrimSpace(*in.KeySource) != "":
		enc.KeySource = canonical(*in.KeySource, batch.KeySourceBatch, batch.KeySourceKeyVault)
	case enc.KeyIdentifier != "":
		// A key identifier alone (az batch account set
		// --encryption-key-identifier) means a customer key.
		enc.KeySource = batch.KeySourceKeyVault
	default:
		enc.KeySource = batch.KeySourceBatch
	}
	if enc.KeySource != batch.KeySourceBatch && enc.KeySource != batch.KeySourceKeyVault {
		return nil, custody.Errorf(custody.KindInvalid, "InvalidKeySource",
			"encryption.keySource '%s' is not valid: use Microsoft.Batch (keys managed by the service) or Microsoft.KeyVault (your key, with keyVaultProperties.keyIdentifier).", enc.KeySource)
	}
	return enc, nil
}

func checkPoolAllocationMode(v *string) (string, error) {
	if v == nil || *v == "" {
		return "BatchService", nil
	}
	switch canonical(*v, "BatchService", "UserSubscription") {
	case "BatchService":
		return "BatchService", nil
	case "UserSubscription":
		return "", custody.Errorf(custody.KindInvalid, "PoolAllocationModeNotSupported",
			"poolAllocationMode UserSubscription is not supported by this server: pools run on its own nodes. Leave it out or use BatchService.")
	}
	return "", custody.Errorf(custody.KindInvalid, "InvalidPoolAllocationMode", "poolAllocationMode '%s' is not valid: use BatchService.", *v)
}

func checkPublicNetworkAccess(v *string) (string, error) {
	if v == nil || *v == "" {
		return "Enabled", nil
	}
	switch c := canonical(*v, "Enabled", "Disabled"); c {
	case "Enabled", "Disabled":
		return c, nil
	}
	return "", custody.Errorf(custody.KindInvalid, "InvalidPublicNetworkAccess", "publicNetworkAccess '%s' is not valid: use Enabled or Disabled.", *v)
}

// put creates an account, or updates it when it exists in this group (as
// Azure does for a repeated deployment). Either way the answer is 202 with a
// Location whose final GET returns the account.
func (h *batchARM) put(w http.ResponseWriter, r *ARMRequest) error {
	var body batchAccountIn
	if err := decodeJSON(r.Request, &body); err != nil {
		return err
	}
	g, err := h.a.s.cfg.RM.ResourceGroup(r.Context(), r.Param("subscriptionId"), r.Param("resourceGroupName"))
	if err != nil {
		return err
	}
	name := r.Param("accountName")
	if err := batch.ValidateName(name); err != nil {
		return err
	}
	location := ""
	if body.Location != nil {
		location = normalizeLocation(*body.Location)
	}
	if location == "" {
		return custody.Errorf(custody.KindInvalid, "LocationRequired", "The location property is required to create batch account '%s' (for example \"westus2\").", name)
	}
	ident, err := toIdentity(body.Identity)
	if err != nil {
		return err
	}
	if err := h.authorizeAssign(r, accountID(r, r.Param("resourceGroupName")), ident); err != nil {
		return err
	}
	var enc *batch.Encryption
	var modes []string
	pam, pna := "BatchService", "Enabled"
	if p := body.Properties; p != nil {
		if p.AllowedAuthenticationModes != nil {
			if modes, err = batch.CheckAuthModes(p.AllowedAuthenticationModes); err != nil {
				return err
			}
		}
		if enc, err = toEncryption(p.Encryption); err != nil {
			return err
		}
		if pam, err = checkPoolAllocationMode(p.PoolAllocationMode); err != nil {
			return err
		}
		if pna, err = checkPublicNetworkAccess(p.PublicNetworkAccess); err != nil {
			return err
		}
		if p.AutoStorage != nil || p.KeyVaultReference != nil {
			return custody.Errorf(custody.KindInvalid, "PropertyNotSupported",
				"autoStorage and keyVaultReference are not supported by this server (task files are kept by the server itself); leave them out.")
		}
	}
	id := accountID(r, g.Name)
	existing, err := h.svc.Account(r.Context(), name)
	switch {
	case err == nil && strings.EqualFold(existing.ID, id):
		return h.putExisting(w, r, existing, location, body.Tags, ident, enc, modes, pam, pna)
	case err != nil && !custody.IsNotFound(err):
		return err
	}
	a := &batch.Account{ID: id, SubscriptionID: g.SubscriptionID, ResourceGroup: g.Name, Name: name, Location: location,
		Tags: body.Tags, PoolAllocationMode: pam, PublicNetworkAccess: pna, AuthModes: modes}
	if ident != nil {
		a.Identity = *ident
	}
	if enc != nil {
		a.Encryption = *enc
	}
	if _, err := h.svc.CreateAccount(r.Context(), a); err != nil {
		return err
	}
	return h.accepted(w, r, id, location, "create")
}

// putExisting applies a PUT to an existing account: tags are replaced;
// identity and encryption change only when given; location and pool
// allocation mode cannot change.
func (h *batchARM) putExisting(w http.ResponseWriter, r *ARMRequest, a *batch.Account, location string, tags map[string]string, ident *batch.AccountIdentity, enc *batch.Encryption, modes []string, pam, pna string) error {
	if location != normalizeLocation(a.Location) {
		return custody.Errorf(custody.KindInvalid, "InvalidResourceLocation",
			"The batch account '%s' already exists in location '%s'; an account cannot move to '%s'. Use its location, or create an account with another name.", a.Name, a.Location, location)
	}
	if pam != a.PoolAllocationMode {
		return custody.Errorf(custody.KindInvalid, "PropertyChangeNotAllowed", "The pool allocation mode of batch account '%s' is %s and cannot be changed.", a.Name, a.PoolAllocationMode)
	}
	if pna != a.PublicNetworkAccess {
		return custody.Errorf(custody.KindInvalid, "PropertyChangeNotSupported", "Changing publicNetworkAccess of batch account '%s' (now %s) is not supported by this server.", a.Name, a.PublicNetworkAccess)
	}
	if tags == nil {
		tags = map[string]string{}
	}
	if _, err := h.svc.Update(r.Context(), a.Name, tags, ident, enc); err != nil {
		return err
	}
	if modes != nil {
		if _, err := h.svc.SetAuthModes(r.Context(), a.Name, modes); err != nil {
			return err
		}
	}
	return h.accepted(w, r, a.ID, a.Location, "update")
}

// accepted records a finished operation on resourceID and answers 202 with
// its Location, as Azure Batch answers account create and delete.
func (h *batchARM) accepted(w http.ResponseWriter, r *ARMRequest, resourceID, location, kind string) error {
	op, err := h.a.s.cfg.RM.BeginOperation(r.Context(), resourceID, kind)
	if err != nil {
		return err
	}
	if err := h.a.s.cfg.RM.FinishOperation(context.WithoutCancel(r.Context()), op, nil); err != nil {
		return err
	}
	if location == "" {
		location = "global"
	}
	loc := h.a.s.PublicURL("management") + "/subscriptions/" + url.PathEscape(r.Param("subscriptionId")) +
		"/providers/Microsoft.Batch/locations/" + url.PathEscape(location) + "/operationResults/" + op.ID + "?api-version=" + url.QueryEscape(r.APIVersion)
	w.Header().Set("Location", loc)
	w.Header().Set("Retry-After", "1")
	w.Header().Set("Retry-After-Ms", batchRetryAfterMs)
	w.WriteHeader(http.StatusAccepted)
	return nil
}

// operationResult is the Location of an account create, update or delete:
// 202 while running; when done, 200 with the account for a create or update,
// 204 for a delete; the error if it failed.
func (h *batchARM) operationResult(w http.ResponseWriter, r *ARMRequest) error {
	op, err := h.a.s.cfg.RM.Store.Operation(r.Context(), r.Param("operationId"))
	notFound := custody.Errorf(custody.KindNotFound, "OperationNotFound", "The operation '%s' was not found. Operation results are kept for the operations of batch accounts only.", r.Param("operationId"))
	if custody.IsNotFound(err) {
		return notFound
	}
	if err != nil {
		return err
	}
	p, ok := rm.ParseID(op.ResourceID)
	if !ok || !strings.EqualFold(p.Namespace, "Microsoft.Batch") || !strings.EqualFold(p.SubscriptionID, r.Param("subscriptionId")) {
		return notFound
	}
	action := actionBatchAccountRead
	if op.Kind == "reencrypt" {
		return h.reencryptResult(w, r, op, p.Name)
	}
	if op.Kind == "delete" {
		action = actionBatchAccountDelete
	}
	if err := h.a.s.cfg.RM.Authorize(r.Context(), r.Caller.ObjectID, op.ResourceID, action, false); err != nil {
		return err
	}
	switch op.Status {
	case rm.OpInProgress:
		w.Header().Set("Location", h.a.s.PublicURL("management")+r.URL.RequestURI())
		w.Header().Set("Retry-After", "1")
		w.WriteHeader(http.StatusAccepted)
		return nil
	case rm.OpFailed:
		return custody.Errorf(custody.KindConflict, op.ErrorCode, "%s", op.ErrorMsg)
	}
	if op.Kind == "delete" {
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	a, err := h.svc.Account(r.Context(), p.Name)
	if err != nil || !strings.EqualFold(a.ID, op.ResourceID) {
		return custody.Errorf(custody.KindConflict, "AccountNoLongerExists",
			"The %s of batch account '%s' succeeded, but the account has since been deleted.", op.Kind, p.Name)
	}
	out, err := h.bodyFor(r, a)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (h *batchARM) get(w http.ResponseWriter, r *ARMRequest) error {
	a, err := h.account(r)
	if err != nil {
		return err
	}
	out, err := h.bodyFor(r, a)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// patch changes tags, identity and encryption. Encryption changes rewrap
// the account's data key (batch.Service.SetEncryption); a locked account
// refuses every change with AccountKeyInaccessible.
func (h *batchARM) patch(w http.ResponseWriter, r *ARMRequest) error {
	a, err := h.account(r)
	if err != nil {
		return err
	}
	var body batchAccountIn
	if err := decodeJSON(r.Request, &body); err != nil {
		return err
	}
	if body.Location != nil && normalizeLocation(*body.Location) != "" && normalizeLocation(*body.Location) != normalizeLocation(a.Location) {
		return custody.Errorf(custody.KindInvalid, "InvalidResourceLocation", "The batch account '%s' is in location '%s' and cannot move to '%s'.", a.Name, a.Location, *body.Location)
	}
	ident, err := toIdentity(body.Identity)
	if err != nil {
		return err
	}
	if err := h.authorizeAssign(r, a.ID, ident); err != nil {
		return err
	}
	var enc *batch.Encryption
	if p := body.Properties; p != nil {
		if enc, err = toEncryption(p.Encryption); err != nil {
			return err
		}
		if p.PoolAllocationMode != nil {
			return custody.Errorf(custody.KindInvalid, "PropertyChangeNotAllowed", "The pool allocation mode of batch account '%s' cannot be changed.", a.Name)
		}
		if p.PublicNetworkAccess != nil {
			pna, err := checkPublicNetworkAccess(p.PublicNetworkAccess)
			if err != nil {
				return err
			}
			if pna != a.PublicNetworkAccess {
				return custody.Errorf(custody.KindInvalid, "PropertyChangeNotSupported", "Changing publicNetworkAccess of batch account '%s' (now %s) is not supported by this server.", a.Name, a.PublicNetworkAccess)
			}
		}
		if p.AutoStorage != nil || p.KeyVaultReference != nil {
			return custody.Errorf(custody.KindInvalid, "PropertyNotSupported",
				"autoStorage and keyVaultReference are not supported by this server; leave them out.")
		}
	}
	var modes []string
	if p := body.Properties; p != nil && p.AllowedAuthenticationModes != nil {
		if modes, err = batch.CheckAuthModes(p.AllowedAuthenticationModes); err != nil {
			return err
		}
	}
	got, err := h.svc.Update(r.Context(), a.Name, body.Tags, ident, enc)
	if err != nil {
		return err
	}
	if modes != nil {
		if got, err = h.svc.SetAuthModes(r.Context(), a.Name, modes); err != nil {
			return err
		}
	}
	out, err := h.bodyFor(r, got)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// delete deletes an account whatever the state of its key. Deleting an
// account that is not there is success (204), as in ARM; a missing resource
// group is ResourceGroupNotFound, also as in ARM.
func (h *batchARM) delete(w http.ResponseWriter, r *ARMRequest) error {
	a, err := h.account(r)
	if custody.IsNotFound(err) && custody.ErrorCode(err) != "ResourceGroupNotFound" {
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	if err != nil {
		return err
	}
	if err := h.svc.Delete(r.Context(), a.Name); err != nil && !custody.IsNotFound(err) {
		return err
	}
	return h.accepted(w, r, a.ID, a.Location, "delete")
}

// list lists the accounts of a group or, without one, of the subscription,
// keeping those the caller may read.
func (h *batchARM) list(w http.ResponseWriter, r *ARMRequest) error {
	rg := r.Param("resourceGroupName")
	if rg != "" {
		g, err := h.a.s.cfg.RM.ResourceGroup(r.Context(), r.Param("subscriptionId"), rg)
		if err != nil {
			return err
		}
		rg = g.Name
	}
	as, err := h.svc.Accounts.ListAccounts(r.Context(), r.Param("subscriptionId"), rg)
	if err != nil {
		return err
	}
	sort.Slice(as, func(i, j int) bool { return as[i].Name < as[j].Name })
	out := []batchAccountOut{}
	for _, a := range as {
		ok, err := h.a.s.cfg.RM.HasRoleAt(r.Context(), r.Caller.ObjectID, a.ID, actionBatchAccountRead, false)
		if err != nil {
			return err
		}
		if ok {
			b, err := h.bodyFor(r, a)
			if err != nil {
				return err
			}
			out = append(out, b)
		}
	}
	writeJSON(w, http.StatusOK, listBody[batchAccountOut]{Value: out})
	return nil
}

// reencrypt starts the re-encryption of the account's data under a new
// data key and answers 202 with a Location (operationResults) and, in the
// body, the re-encryption's state. A second request while one runs is
// ReencryptionInProgress (409); a locked account AccountKeyInaccessible.
func (h *batchARM) reencrypt(w http.ResponseWriter, r *ARMRequest) error {
	a, err := h.account(r)
	if err != nil {
		return err
	}
	got, err := h.svc.Reencrypt(r.Context(), a.Name)
	if err != nil {
		return err
	}
	location := got.Location
	if location == "" {
		location = "global"
	}
	loc := h.a.s.PublicURL("management") + "/subscriptions/" + url.PathEscape(r.Param("subscriptionId")) +
		"/providers/Microsoft.Batch/locations/" + url.PathEscape(location) + "/operationResults/" + got.Reencryption.OperationID + "?api-version=" + url.QueryEscape(r.APIVersion)
	w.Header().Set("Location", loc)
	w.Header().Set("Retry-After", "1")
	writeJSON(w, http.StatusAccepted, h.operationBody(got.Reencryption.OperationID, got))
	return nil
}

// batchOperationOut is the body of a re-encryption's operation while it
// runs: ARM's operation status with the progress in properties.
type batchOperationOut struct {
	ID              string `json:"id"`
	Name            string `json:"name"`
	Status          string `json:"status"`
	StartTime       string `json:"startTime,omitempty"`
	EndTime         string `json:"endTime,omitempty"`
	PercentComplete int    `json:"percentComplete"`
	Properties      struct {
		Reencryption *batchReencryptionOut `json:"reencryption,omitempty"`
	} `json:"properties"`
}

func (h *batchARM) operationBody(opID string, a *batch.Account) batchOperationOut {
	out := batchOperationOut{ID: a.ID + "/operationResults/" + opID, Name: opID, Status: "InProgress"}
	if re := reencryptionOut(a, time.Now()); re != nil {
		out.StartTime, out.EndTime, out.PercentComplete = re.StartTime, re.EndTime, re.PercentComplete
		out.Properties.Reencryption = re
	}
	return out
}

// reencryptResult answers a re-encryption's operation: 202 with its
// progress while it runs (paused included), 200 with the account when it
// has finished.
func (h *batchARM) reencryptResult(w http.ResponseWriter, r *ARMRequest, op *rm.Operation, name string) error {
	if err := h.a.s.cfg.RM.Authorize(r.Context(), r.Caller.ObjectID, op.ResourceID, actionBatchAccountRead, false); err != nil {
		return err
	}
	a, err := h.svc.Account(r.Context(), name)
	if err != nil || !strings.EqualFold(a.ID, op.ResourceID) {
		return custody.Errorf(custody.KindConflict, "AccountNoLongerExists",
			"The re-encryption of batch account '%s' did not finish: the account has been deleted.", name)
	}
	switch op.Status {
	case rm.OpFailed:
		return custody.Errorf(custody.KindConflict, op.ErrorCode, "%s", op.ErrorMsg)
	case rm.OpInProgress:
		w.Header().Set("Location", h.a.s.PublicURL("management")+r.URL.RequestURI())
		w.Header().Set("Retry-After", "1")
		writeJSON(w, http.StatusAccepted, h.operationBody(op.ID, a))
		return nil
	}
	out, err := h.bodyFor(r, a)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// batchKeysOut is the answer of listKeys and regenerateKeys
// (BatchAccountKeys).
type batchKeysOut struct {
	AccountName string `json:"accountName"`
	Primary     string `json:"primary"`
	Secondary   string `json:"secondary"`
}

// listKeys answers the account's shared keys; 400 if the account does not
// allow SharedKey authentication.
func (h *batchARM) listKeys(w http.ResponseWriter, r *ARMRequest) error {
	a, err := h.account(r)
	if err != nil {
		return err
	}
	k, err := h.svc.ListKeys(r.Context(), a)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, batchKeysOut{k.AccountName, k.Primary, k.Secondary})
	return nil
}

// regenerateKeys replaces the key named by {"keyName":"Primary"|"Secondary"}
// and answers both keys.
func (h *batchARM) regenerateKeys(w http.ResponseWriter, r *ARMRequest) error {
	a, err := h.account(r)
	if err != nil {
		return err
	}
	var body struct {
		KeyName *string `json:"keyName"`
	}
	if err := decodeJSON(r.Request, &body); err != nil {
		return err
	}
	if body.KeyName == nil {
		return custody.Errorf(custody.KindInvalid, "InvalidRequestContent", "The request body needs keyName: Primary or Secondary.")
	}
	k, err := h.svc.RegenerateKey(r.Context(), a, *body.KeyName)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, batchKeysOut{k.AccountName, k.Primary, k.Secondary})
	return nil
}
