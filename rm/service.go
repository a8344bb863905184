package rm

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"time"

	"custody"
)

// Service is the resource manager.
type Service struct {
	Store          Store
	SubscriptionID string
	TenantID       string
	Cleaners       []GroupCleaner
	Now            func() time.Time
	// NewID returns a new GUID; set by wiring (identity.NewID).
	NewID func() string
}

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// CheckSubscription returns a not-found error unless sub is the server's
// subscription.
func (s *Service) CheckSubscription(sub string) error {
	if !strings.EqualFold(sub, s.SubscriptionID) {
		return custody.Errorf(custody.KindNotFound, "SubscriptionNotFound",
			"The subscription '%s' could not be found. This server has one subscription: %s.", sub, s.SubscriptionID)
	}
	return nil
}

var groupName = regexp.MustCompile(`^[-\w._()]{1,90}$`)

// PutResourceGroup creates or updates a resource group and reports whether it
// was created.
func (s *Service) PutResourceGroup(ctx context.Context, g *ResourceGroup) (bool, error) {
	if err := s.CheckSubscription(g.SubscriptionID); err != nil {
		return false, err
	}
	if !groupName.MatchString(g.Name) || strings.HasSuffix(g.Name, ".") {
		return false, custody.Errorf(custody.KindInvalid, "InvalidResourceGroupName",
			"The resource group name %q is invalid: use 1 to 90 letters, digits, underscores, hyphens, periods or parentheses, not ending in a period.", g.Name)
	}
	if strings.TrimSpace(g.Location) == "" {
		return false, custody.Errorf(custody.KindInvalid, "LocationRequired",
			"The location property is required for resource group %q (for example \"westus2\").", g.Name)
	}
	loc, ok := custody.NormalizeLocation(g.Location)
	if !ok {
		return false, custody.LocationError(g.Location, "resource group")
	}
	if err := custody.CheckTags(g.Tags, "resource group '"+g.Name+"'"); err != nil {
		return false, err
	}
	g.Location = loc
	g.SubscriptionID = s.SubscriptionID
	g.ID = GroupID(s.SubscriptionID, g.Name)
	g.CreatedAt = s.now().UTC()
	return s.Store.PutResourceGroup(ctx, g)
}

// ResourceGroup returns a resource group or a ResourceGroupNotFound error.
func (s *Service) ResourceGroup(ctx context.Context, sub, name string) (*ResourceGroup, error) {
	if err := s.CheckSubscription(sub); err != nil {
		return nil, err
	}
	return s.Store.ResourceGroup(ctx, s.SubscriptionID, name)
}

// RequireGroup returns nil if the resource group exists, else the ARM error a
// provider should answer a PUT into a missing group with.
func (s *Service) RequireGroup(ctx context.Context, sub, name string) error {
	_, err := s.ResourceGroup(ctx, sub, name)
	return err
}

// DeleteResourceGroup deletes a group and everything in it: each provider
// deletes its resources, then role assignments at or below the group go, then
// the group.
func (s *Service) DeleteResourceGroup(ctx context.Context, sub, name string) error {
	g, err := s.ResourceGroup(ctx, sub, name)
	if err != nil {
		return err
	}
	for _, c := range s.Cleaners {
		if err := c.DeleteInGroup(ctx, g.SubscriptionID, g.Name); err != nil {
			return err
		}
	}
	if err := s.Store.DeleteRoleAssignmentsUnder(ctx, g.ID); err != nil {
		return err
	}
	return s.Store.DeleteResourceGroup(ctx, g.SubscriptionID, g.Name)
}

// Authorize checks that principalID holds a role at scope (or above it) that
// allows action. Data actions (key vault data plane) set data.
func (s *Service) Authorize(ctx context.Context, principalID, scope, action string, data bool) error {
	as, err := s.Store.RoleAssignmentsForPrincipal(ctx, principalID)
	if err != nil {
		return err
	}
	for _, a := range as {
		if !Within(scope, a.Scope) {
			continue
		}
		role, ok := RoleByGUID(lastSegment(a.RoleDefinitionID))
		if ok && role.Allows(action, data) {
			return nil
		}
	}
	return custody.Errorf(custody.KindForbidden, "AuthorizationFailed",
		"The client '%s' with object id '%s' does not have authorization to perform action '%s' over scope '%s' or the scope is invalid. Ask an Owner to assign you a role at this scope (custody role assignment create).",
		principalID, principalID, action, scope)
}

// AuthorizeAssign checks that principalID may attach each of the
// user-assigned identities ids (ActionAssignIdentity on each) to the
// resource at scope, which it is about to write with action. A refusal is
// Azure's LinkedAuthorizationFailed (403) naming the identities it may not
// assign. It is checked before the identities are looked up, so the answer
// does not tell whether they exist.
func (s *Service) AuthorizeAssign(ctx context.Context, principalID, action, scope string, ids []string) error {
	var denied []string
	for _, id := range ids {
		ok, err := s.HasRoleAt(ctx, principalID, id, ActionAssignIdentity, false)
		if err != nil {
			return err
		}
		if !ok {
			denied = append(denied, id)
		}
	}
	if len(denied) == 0 {
		return nil
	}
	return custody.Errorf(custody.KindForbidden, "LinkedAuthorizationFailed",
		"The client '%s' with object id '%s' has permission to perform action '%s' on scope '%s'; however, it does not have permission to perform action '%s' on the linked scope(s) '%s' or the linked scope(s) are invalid. Ask an Owner of the identity to assign you Managed Identity Operator on it.",
		principalID, principalID, action, scope, ActionAssignIdentity, strings.Join(denied, ","))
}

// HasRoleAt reports whether principalID has a role that allows action at scope.
func (s *Service) HasRoleAt(ctx context.Context, principalID, scope, action string, data bool) (bool, error) {
	err := s.Authorize(ctx, principalID, scope, action, data)
	if err == nil {
		return true, nil
	}
	if custody.ErrorKind(err) == custody.KindForbidden {
		return false, nil
	}
	return false, err
}

// ValidateScope checks that scope is the subscription, an existing resource
// group, or a resource id inside an existing group.
func (s *Service) ValidateScope(ctx context.Context, scope string) error {
	p, ok := ParseID(scope)
	if !ok {
		return custody.Errorf(custody.KindInvalid, "InvalidScope",
			"The scope '%s' is not valid: use /subscriptions/{id}, /subscriptions/{id}/resourceGroups/{name} or a resource id.", scope)
	}
	if err := s.CheckSubscription(p.SubscriptionID); err != nil {
		return err
	}
	if p.ResourceGroup != "" {
		return s.RequireGroup(ctx, p.SubscriptionID, p.ResourceGroup)
	}
	return nil
}

// assignMu serializes role assignment writes in this process, so that the
// checks of CreateRoleAssignment and its write are one step.
var assignMu sync.Mutex

// CreateRoleAssignment assigns role to principalID at scope. name is the
// assignment's GUID (a new one if empty). An existing assignment of that id
// is returned unchanged when it names the same role and principal; any other
// change is refused with 409 RoleAssignmentUpdateNotPermitted, as ARM answers.
func (s *Service) CreateRoleAssignment(ctx context.Context, scope, name, roleDefinitionID, principalID, principalType, createdBy string) (*RoleAssignment, error) {
	if err := s.ValidateScope(ctx, scope); err != nil {
		return nil, err
	}
	role, ok := RoleByGUID(lastSegment(roleDefinitionID))
	if !ok {
		return nil, custody.Errorf(custody.KindNotFound, "RoleDefinitionDoesNotExist",
			"The specified role definition with ID '%s' does not exist. Use one of the built-in roles (custody role definition list).", lastSegment(roleDefinitionID))
	}
	if principalID == "" {
		return nil, custody.Errorf(custody.KindInvalid, "InvalidPrincipalId", "A principal id is required to assign a role.")
	}
	if name == "" {
		name = s.NewID()
	}
	if principalType == "" {
		principalType = "ServicePrincipal"
	}
	a := &RoleAssignment{
		ID:               strings.TrimRight(scope, "/") + "/providers/Microsoft.Authorization/roleAssignments/" + name,
		Name:             name,
		Scope:            strings.TrimRight(scope, "/"),
		RoleDefinitionID: RoleDefinitionID(s.SubscriptionID, role.GUID),
		PrincipalID:      principalID,
		PrincipalType:    principalType,
		CreatedAt:        s.now().UTC(),
		CreatedBy:        createdBy,
	}
	assignMu.Lock()
	defer assignMu.Unlock()
	// An assignment's scope, role and principal never change: a PUT on an
	// existing id must repeat them (and then changes nothing), as in Azure.
	switch cur, err := s.Store.RoleAssignment(ctx, a.ID); {
	case err == nil:
		if !strings.EqualFold(cur.PrincipalID, a.PrincipalID) || !strings.EqualFold(lastSegment(cur.RoleDefinitionID), role.GUID) || !strings.EqualFold(cur.Scope, a.Scope) {
			return nil, custody.Errorf(custody.KindConflict, "RoleAssignmentUpdateNotPermitted",
				"Tenant ID, application ID, principal ID, and scope are not allowed to be updated. Role assignment '%s' gives role %s to principal %s; to change either, delete it and create an assignment with a new id.",
				cur.Name, lastSegment(cur.RoleDefinitionID), cur.PrincipalID)
		}
		return cur, nil
	case !custody.IsNotFound(err):
		return nil, err
	}
	// Assigning the same role to the same principal at the same scope twice
	// is a conflict in Azure.
	existing, err := s.Store.ListRoleAssignments(ctx, a.Scope)
	if err != nil {
		return nil, err
	}
	for _, e := range existing {
		if strings.EqualFold(e.Scope, a.Scope) && e.PrincipalID == principalID && strings.EqualFold(lastSegment(e.RoleDefinitionID), role.GUID) && !strings.EqualFold(e.Name, name) {
			return nil, custody.Errorf(custody.KindConflict, "RoleAssignmentExists", "The role assignment already exists (%s).", e.ID)
		}
	}
	if err := s.Store.PutRoleAssignment(ctx, a); err != nil {
		return nil, err
	}
	return a, nil
}

// Operations

// BeginOperation records a new in-progress operation on resourceID.
func (s *Service) BeginOperation(ctx context.Context, resourceID, kind string) (*Operation, error) {
	now := s.now().UTC()
	op := &Operation{ID: s.NewID(), ResourceID: resourceID, Kind: kind, Status: OpInProgress, CreatedAt: now, UpdatedAt: now}
	return op, s.Store.PutOperation(ctx, op)
}

// FinishOperation records the outcome of op: err == nil is success.
func (s *Service) FinishOperation(ctx context.Context, op *Operation, err error) error {
	op.UpdatedAt = s.now().UTC()
	if err != nil {
		op.Status, op.ErrorCode, op.ErrorMsg = OpFailed, custody.ErrorCode(err), custody.ErrorMessage(err)
	} else {
		op.Status = OpSucceeded
	}
	return s.Store.PutOperation(ctx, op)
}

func lastSegment(id string) string {
	if i := strings.LastIndexByte(id, '/'); i >= 0 {
		return id[i+1:]
	}
	return id
}

// ScopeDescription describes a scope in words for messages.
func ScopeDescription(scope string) string {
	p, ok := ParseID(scope)
	switch {
	case !ok:
		return scope
	case p.Name != "":
		return fmt.Sprintf("resource %s/%s/%s", p.Namespace, p.Type, p.Name)
	case p.ResourceGroup != "":
		return "resource group " + p.ResourceGroup
	default:
		return "subscription " + p.SubscriptionID
	}
}

// RoleAssignmentObserver is told, after the fact, that an assignment of
// principalID at scope was created or deleted.
type RoleAssignmentObserver func(ctx context.Context, scope, principalID string)

// ObserveRoleAssignments makes every role assignment write through s.Store
// (whoever makes it: the API, a group or vault deletion) call f once it is
// stored. The key vault uses it to publish access changes on its change
// feed. Call it during wiring, before the store is in use.
func (s *Service) ObserveRoleAssignments(f RoleAssignmentObserver) {
	s.Store = &observedStore{Store: s.Store, f: f}
}

type observedStore struct {
	Store
	f RoleAssignmentObserver
}

func (o *observedStore) PutRoleAssignment(ctx context.Context, a *RoleAssignment) error {
	if err := o.Store.PutRoleAssignment(ctx, a); err != nil {
		return err
	}
	o.f(ctx, a.Scope, a.PrincipalID)
	return nil
}

func (o *observedStore) DeleteRoleAssignment(ctx context.Context, id string) error {
	a, err := o.Store.RoleAssignment(ctx, id)
	if err := o.Store.DeleteRoleAssignment(ctx, id); err != nil {
		return err
	}
	if err == nil {
		o.f(ctx, a.Scope, a.PrincipalID)
	}
	return nil
}

func (o *observedStore) DeleteRoleAssignmentsUnder(ctx context.Context, scope string) error {
	as, err := o.Store.ListRoleAssignments(ctx, scope)
	if err := o.Store.DeleteRoleAssignmentsUnder(ctx, scope); err != nil {
		return err
	}
	if err == nil {
		for _, a := range as {
			o.f(ctx, a.Scope, a.PrincipalID)
		}
	}
	return nil
}
