// Package rm is Custody's resource manager (what Azure Resource Manager is):
// the subscription, resource groups, role-based access control, and the
// long-running operation records that ARM's polling protocol reads.
//
// Resource providers (managed identities, key vaults, batch accounts) own
// their resources; rm knows them only as resource ids, and asks each provider
// to delete what is in a group when the group is deleted (GroupCleaner).
package rm

import (
	"context"
	"strings"
	"time"
)

// ResourceGroup is a Microsoft.Resources/resourceGroups resource.
type ResourceGroup struct {
	ID             string
	SubscriptionID string
	Name           string
	Location       string
	Tags           map[string]string
	CreatedAt      time.Time
}

// RoleAssignment grants a role to a principal at a scope (a subscription,
// resource group or resource id) and everything below it.
type RoleAssignment struct {
	ID               string // {scope}/providers/Microsoft.Authorization/roleAssignments/{name}
	Name             string // a GUID
	Scope            string
	RoleDefinitionID string // full id: /subscriptions/{sub}/providers/Microsoft.Authorization/roleDefinitions/{guid}
	PrincipalID      string
	PrincipalType    string // ServicePrincipal, User, Group
	CreatedAt        time.Time
	CreatedBy        string
}

// Operation is the record of a long-running operation, read by ARM's
// Location / Azure-AsyncOperation pollers.
type Operation struct {
	ID         string
	ResourceID string
	Kind       string // "delete", "create", ...
	Status     string // InProgress, Succeeded, Failed
	ErrorCode  string
	ErrorMsg   string
	CreatedAt  time.Time
	UpdatedAt  time.Time
}

// Operation states, as ARM spells them.
const (
	OpInProgress = "InProgress"
	OpSucceeded  = "Succeeded"
	OpFailed     = "Failed"
)

// Store is the persistence rm needs.
type Store interface {
	Setting(ctx context.Context, key string) (string, error) // KindNotFound if unset
	// SetSettingIfAbsent stores value under key unless set, and returns the
	// value in force.
	SetSettingIfAbsent(ctx context.Context, key, value string) (string, error)

	// PutResourceGroup creates or updates g; it reports whether it was created.
	PutResourceGroup(ctx context.Context, g *ResourceGroup) (bool, error)
	ResourceGroup(ctx context.Context, subscriptionID, name string) (*ResourceGroup, error)
	ListResourceGroups(ctx context.Context, subscriptionID string) ([]*ResourceGroup, error)
	DeleteResourceGroup(ctx context.Context, subscriptionID, name string) error

	PutRoleAssignment(ctx context.Context, a *RoleAssignment) error
	RoleAssignment(ctx context.Context, id string) (*RoleAssignment, error)
	// RoleAssignmentsForPrincipal returns every assignment of principalID.
	RoleAssignmentsForPrincipal(ctx context.Context, principalID string) ([]*RoleAssignment, error)
	// ListRoleAssignments returns assignments whose scope is scope or below it.
	ListRoleAssignments(ctx context.Context, scope string) ([]*RoleAssignment, error)
	DeleteRoleAssignment(ctx context.Context, id string) error
	// DeleteRoleAssignmentsUnder deletes assignments at scope or below it.
	DeleteRoleAssignmentsUnder(ctx context.Context, scope string) error

	PutOperation(ctx context.Context, op *Operation) error
	Operation(ctx context.Context, id string) (*Operation, error)
}

// GroupCleaner is implemented by each resource provider: it deletes
// everything it owns in a resource group (including soft-deleting where the
// provider's rules say so).
type GroupCleaner interface {
	DeleteInGroup(ctx context.Context, subscriptionID, resourceGroup string) error
}

// GroupCleanerFunc adapts a function to GroupCleaner.
type GroupCleanerFunc func(ctx context.Context, subscriptionID, resourceGroup string) error

func (f GroupCleanerFunc) DeleteInGroup(ctx context.Context, sub, rg string) error {
	return f(ctx, sub, rg)
}

// SubscriptionID returns the resource id of a subscription.
func SubscriptionID(sub string) string { return "/subscriptions/" + sub }

// GroupID returns the resource id of a resource group.
func GroupID(sub, rg string) string { return "/subscriptions/" + sub + "/resourceGroups/" + rg }

// ResourceID returns the id of a top-level resource of a provider.
func ResourceID(sub, rg, namespace, typ, name string) string {
	return GroupID(sub, rg) + "/providers/" + namespace + "/" + typ + "/" + name
}

// Within reports whether the resource id id is scope or lies below it.
// Resource ids compare case-insensitively, as ARM compares them.
func Within(id, scope string) bool {
	id, scope = strings.ToLower(strings.TrimRight(id, "/")), strings.ToLower(strings.TrimRight(scope, "/"))
	if scope == "" || scope == "/" {
		return true
	}
	return id == scope || strings.HasPrefix(id, scope+"/")
}

// ParsedID is a resource id split into its parts.
type ParsedID struct {
	SubscriptionID string
	ResourceGroup  string
	Namespace      string
	Type           string // the first type segment under the namespace
	Name           string
}

// ParseID splits a resource id of the form
// /subscriptions/{sub}[/resourceGroups/{rg}[/providers/{ns}/{type}/{name}...]].
// ok is false if id does not start that way.
func ParseID(id string) (p ParsedID, ok bool) {
	segs := strings.Split(strings.Trim(id, "/"), "/")
	if len(segs) < 2 || !strings.EqualFold(segs[0], "subscriptions") || segs[1] == "" {
		return p, false
	}
	p.SubscriptionID = segs[1]
	rest := segs[2:]
	if len(rest) >= 2 && strings.EqualFold(rest[0], "resourceGroups") {
		p.ResourceGroup = rest[1]
		rest = rest[2:]
	} else if len(rest) == 1 {
		return p, false
	}
	if len(rest) >= 4 && strings.EqualFold(rest[0], "providers") {
		p.Namespace, p.Type, p.Name = rest[1], rest[2], rest[3]
	} else if len(rest) != 0 {
		return p, false
	}
	return p, true
}

// UserAssignedIdentityID checks that id is the resource id of a user-assigned
// identity, /subscriptions/{s}/resourceGroups/{g}/providers/
// Microsoft.ManagedIdentity/userAssignedIdentities/{name}, and returns it
// with Azure's casing of the literal segments. Segments may not be empty,
// "." or "..", nor hold a backslash, so that the id a role is checked at is
// the identity that is then used.
func UserAssignedIdentityID(id string) (string, bool) {
	segs := strings.Split(strings.TrimPrefix(id, "/"), "/")
	if !strings.HasPrefix(id, "/") || len(segs) != 8 ||
		!strings.EqualFold(segs[0], "subscriptions") || !strings.EqualFold(segs[2], "resourceGroups") || !strings.EqualFold(segs[4], "providers") ||
		!strings.EqualFold(segs[5], "Microsoft.ManagedIdentity") || !strings.EqualFold(segs[6], "userAssignedIdentities") {
		return "", false
	}
	for _, s := range segs {
		if s == "" || s == "." || s == ".." || strings.ContainsAny(s, "\\?#") {
			return "", false
		}
	}
	return ResourceID(segs[1], segs[3], "Microsoft.ManagedIdentity", "userAssignedIdentities", segs[7]), true
}
