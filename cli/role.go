package cli

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/spf13/cobra"
)

const (
	roleAssignments = "/providers/Microsoft.Authorization/roleAssignments"
	roleDefinitions = "/providers/Microsoft.Authorization/roleDefinitions"
)

func (a *app) roleCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "role", Short: "Manage role assignments and view role definitions"}
	assignment := &cobra.Command{Use: "assignment", Short: "Manage role assignments"}
	assignment.AddCommand(a.roleAssignmentCreateCmd(), a.roleAssignmentListCmd(), a.roleAssignmentDeleteCmd())
	definition := &cobra.Command{Use: "definition", Short: "View role definitions"}
	definition.AddCommand(a.roleDefinitionListCmd())
	cmd.AddCommand(assignment, definition)
	return cmd
}

// flattenProps gives an ARM body az's flattened shape: properties at the
// top level next to id, name and type. rename maps property names that
// would clash (a role definition's "type" becomes "roleType").
func flattenProps(v any, rename map[string]string) map[string]any {
	m, _ := v.(map[string]any)
	out := map[string]any{}
	for k, x := range m {
		if k != "properties" {
			out[k] = x
		}
	}
	props, _ := m["properties"].(map[string]any)
	for k, x := range props {
		if r, ok := rename[k]; ok {
			k = r
		}
		out[k] = x
	}
	return out
}

// roleScope is az's default scope: --scope, else the resource group, else
// the subscription.
func (c *client) roleScope(scope, group string) string {
	switch {
	case scope != "":
		return strings.TrimRight(scope, "/")
	case group != "":
		return c.subscriptionPath() + "/resourceGroups/" + group
	}
	return c.subscriptionPath()
}

// roleDefinitions lists the role definitions, optionally only the one
// named roleName.
func (c *client) roleDefinitions(ctx context.Context, roleName string) ([]any, error) {
	q := url.Values{}
	if roleName != "" {
		q.Set("$filter", "roleName eq "+odataQuote(roleName))
	}
	return c.armList(ctx, c.subscriptionPath()+roleDefinitions, apiAuthorization, q)
}

// resolveRole turns a role name, GUID or role definition id into a role
// definition id.
func (c *client) resolveRole(ctx context.Context, role string) (string, error) {
	switch {
	case strings.Contains(strings.ToLower(role), strings.ToLower(roleDefinitions)+"/"):
		return role, nil
	case isGUID(role):
		return c.subscriptionPath() + roleDefinitions + "/" + strings.ToLower(role), nil
	}
	defs, err := c.roleDefinitions(ctx, role)
	if err != nil {
		return "", err
	}
	for _, d := range defs {
		f := flattenProps(d, nil)
		if strings.EqualFold(str(f["roleName"]), role) {
			return str(f["id"]), nil
		}
	}
	return "", fmt.Errorf("role '%s' doesn't exist. `custody role definition list --query [].roleName` lists the roles.", role)
}

// resolveAssignee finds the principal an --assignee names: an object id,
// an app id or a display name, looked up in the directory as az does.
func (c *client) resolveAssignee(ctx context.Context, assignee string) (id, principalType string, err error) {
	var filters []string
	if isGUID(assignee) {
		filters = []string{"id eq " + odataQuote(assignee), "appId eq " + odataQuote(assignee)}
	} else {
		filters = []string{"displayName eq " + odataQuote(assignee)}
	}
	for _, f := range filters {
		sps, err := c.findSPs(ctx, f)
		if err != nil {
			return "", "", err
		}
		if len(sps) > 1 {
			return "", "", fmt.Errorf("find more than one principal named '%s'; use --assignee-object-id with the object id.", assignee)
		}
		if len(sps) == 1 {
			m, _ := sps[0].(map[string]any)
			return str(m["id"]), "ServicePrincipal", nil
		}
	}
	return "", "", fmt.Errorf("cannot find user or service principal in graph database for '%s'. If the assignee is an appId, make sure the corresponding service principal is created with `custody ad sp create-for-rbac`.", assignee)
}

// createRoleAssignment PUTs a new role assignment and returns it flattened.
func (c *client) createRoleAssignment(ctx context.Context, scope, roleID, principalID, principalType, description string) (map[string]any, error) {
	props := map[string]any{"roleDefinitionId": roleID, "principalId": principalID}
	if principalType != "" {
		props["principalType"] = principalType
	}
	if description != "" {
		props["description"] = description
	}
	out, _, err := c.arm(ctx, http.MethodPut, strings.TrimRight(scope, "/")+roleAssignments+"/"+newGUID(), apiAuthorization, nil, map[string]any{"properties": props})
	if err != nil {
		return nil, err
	}
	return flattenProps(out, nil), nil
}

func (a *app) roleAssignmentCreateCmd() *cobra.Command {
	var assignee, objectID, principalType, role, scope, group, description string
	cmd := &cobra.Command{
		Use:     "create",
		Short:   "Create a role assignment",
		Example: "  custody role assignment create --assignee $APP_ID --role Reader --scope /subscriptions/$SUB/resourceGroups/rg1",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireFlag("--role", role); err != nil {
				return err
			}
			if (assignee == "") == (objectID == "") {
				return errors.New("usage error: provide exactly one of --assignee or --assignee-object-id")
			}
			ctx := cmd.Context()
			c, err := a.client(ctx)
			if err != nil {
				return err
			}
			roleID, err := c.resolveRole(ctx, role)
			if err != nil {
				return err
			}
			if assignee != "" {
				if objectID, principalType, err = c.resolveAssignee(ctx, assignee); err != nil {
					return err
				}
			}
			out, err := c.createRoleAssignment(ctx, c.roleScope(scope, group), roleID, objectID, principalType, description)
			if err != nil {
				return err
			}
			return a.print(out, nil)
		},
	}
	f := cmd.Flags()
	f.StringVar(&assignee, "assignee", "", "the principal: object id, app id or display name")
	f.StringVar(&objectID, "assignee-object-id", "", "the principal's object id (no directory look-up)")
	f.StringVar(&principalType, "assignee-principal-type", "", "with --assignee-object-id: ServicePrincipal, User, Group or ForeignGroup")
	f.StringVar(&role, "role", "", "role name or id, e.g. Reader")
	f.StringVar(&scope, "scope", "", "scope: /subscriptions/{id}[/resourceGroups/{rg}[/providers/...]] (default: the subscription)")
	f.StringVarP(&group, "resource-group", "g", "", "use the resource group as the scope")
	f.StringVar(&description, "description", "", "description of the role assignment")
	return cmd
}

// assignmentFilter selects role assignments as az's list and delete do.
type assignmentFilter struct {
	all              bool
	scope            string // exact scope, or with inherited the scope they apply to
	includeInherited bool
	principalID      string
	roleID           string
}

// searchAssignments lists role assignments matching f, flattened.
func (c *client) searchAssignments(ctx context.Context, f assignmentFilter) ([]map[string]any, error) {
	base := c.subscriptionPath()
	var conds []string
	if !f.all && f.scope != "" {
		base = f.scope
		conds = append(conds, "atScope()")
	}
	if f.principalID != "" {
		conds = append(conds, "principalId eq "+odataQuote(f.principalID))
	}
	q := url.Values{}
	if len(conds) > 0 {
		q.Set("$filter", strings.Join(conds, " and "))
	}
	list, err := c.armList(ctx, base+roleAssignments, apiAuthorization, q)
	if err != nil {
		return nil, err
	}
	out := []map[string]any{}
	for _, x := range list {
		m := flattenProps(x, nil)
		s := str(m["scope"])
		switch {
		case f.all || f.scope == "":
		case f.includeInherited && withinScope(f.scope, s):
		case strings.EqualFold(s, f.scope):
		default:
			continue
		}
		if f.roleID != "" && !strings.EqualFold(lastSegment(str(m["roleDefinitionId"])), lastSegment(f.roleID)) {
			continue
		}
		out = append(out, m)
	}
	return out, nil
}

// withinScope reports whether scope is at or below parent.
func withinScope(scope, parent string) bool {
	s, p := strings.ToLower(strings.TrimRight(scope, "/")), strings.ToLower(strings.TrimRight(parent, "/"))
	return s == p || strings.HasPrefix(s, p+"/") || p == ""
}

func lastSegment(id string) string { return id[strings.LastIndex(id, "/")+1:] }

// nameAssignments adds az's principalName and roleDefinitionName.
func (c *client) nameAssignments(ctx context.Context, list []map[string]any) error {
	if len(list) == 0 {
		return nil
	}
	defs, err := c.roleDefinitions(ctx, "")
	if err != nil {
		return err
	}
	roles := map[string]string{}
	for _, d := range defs {
		f := flattenProps(d, nil)
		roles[strings.ToLower(str(f["name"]))] = str(f["roleName"])
	}
	sps, err := c.findSPs(ctx, "")
	if err != nil {
		return err
	}
	principals := map[string]string{}
	for _, x := range sps {
		m, _ := x.(map[string]any)
		name := str(m["displayName"])
		if spns, ok := m["servicePrincipalNames"].([]any); ok && len(spns) > 0 {
			name = str(spns[0])
		}
		principals[strings.ToLower(str(m["id"]))] = name
	}
	for _, m := range list {
		m["roleDefinitionName"] = roles[strings.ToLower(lastSegment(str(m["roleDefinitionId"])))]
		m["principalName"] = principals[strings.ToLower(str(m["principalId"]))]
	}
	return nil
}

// assignmentTable is az's table for role assignments.
func assignmentTable(v any) any {
	list, _ := v.([]any)
	rows := []row{}
	for _, x := range list {
		m, _ := x.(map[string]any)
		rows = append(rows, newRow("Principal", m["principalName"], "Role", m["roleDefinitionName"], "Scope", m["scope"]))
	}
	return rows
}

// assignmentSearchFlags are the flags list and delete share.
type assignmentSearchFlags struct {
	assignee, objectID, role, scope, group string
	includeInherited                       bool
}

func (s *assignmentSearchFlags) add(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&s.assignee, "assignee", "", "the principal: object id, app id or display name")
	f.StringVar(&s.objectID, "assignee-object-id", "", "the principal's object id (no directory look-up)")
	f.StringVar(&s.role, "role", "", "role name or id")
	f.StringVar(&s.scope, "scope", "", "scope of the role assignments")
	f.StringVarP(&s.group, "resource-group", "g", "", "use the resource group as the scope")
	f.BoolVar(&s.includeInherited, "include-inherited", false, "include assignments at scopes above --scope")
}

func (s *assignmentSearchFlags) filter(ctx context.Context, c *client, all bool) (assignmentFilter, error) {
	f := assignmentFilter{all: all, includeInherited: s.includeInherited, principalID: s.objectID}
	if !all {
		f.scope = c.roleScope(s.scope, s.group)
	}
	var err error
	if s.assignee != "" {
		if f.principalID, _, err = c.resolveAssignee(ctx, s.assignee); err != nil {
			return f, err
		}
	}
	if s.role != "" {
		if f.roleID, err = c.resolveRole(ctx, s.role); err != nil {
			return f, err
		}
	}
	return f, nil
}

func (a *app) roleAssignmentListCmd() *cobra.Command {
	var s assignmentSearchFlags
	var all bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List role assignments (by default those at the subscription scope; --all for every scope)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			c, err := a.client(ctx)
			if err != nil {
				return err
			}
			f, err := s.filter(ctx, c, all)
			if err != nil {
				return err
			}
			list, err := c.searchAssignments(ctx, f)
			if err != nil {
				return err
			}
			if err := c.nameAssignments(ctx, list); err != nil {
				return err
			}
			out := make([]any, len(list))
			for i, m := range list {
				out[i] = m
			}
			return a.print(out, assignmentTable)
		},
	}
	s.add(cmd)
	cmd.Flags().BoolVar(&all, "all", false, "list assignments at every scope of the subscription")
	return cmd
}

func (a *app) roleAssignmentDeleteCmd() *cobra.Command {
	var s assignmentSearchFlags
	var ids []string
	cmd := &cobra.Command{
		Use:   "delete",
		Short: "Delete role assignments, by --ids or by assignee, role and scope",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(ids) == 0 && s.assignee == "" && s.objectID == "" && s.role == "" && s.scope == "" && s.group == "" {
				return errors.New("please provide at least one of these parameters: --ids, --assignee, --assignee-object-id, --role, --resource-group, --scope")
			}
			ctx := cmd.Context()
			c, err := a.client(ctx)
			if err != nil {
				return err
			}
			if len(ids) == 0 {
				f, err := s.filter(ctx, c, false)
				if err != nil {
					return err
				}
				found, err := c.searchAssignments(ctx, f)
				if err != nil {
					return err
				}
				for _, m := range found {
					ids = append(ids, str(m["id"]))
				}
				if len(ids) == 0 {
					return errors.New("no matched assignments were found to delete")
				}
			}
			for _, id := range ids {
				if _, _, err := c.arm(ctx, http.MethodDelete, id, apiAuthorization, nil, nil); err != nil {
					return err
				}
			}
			return nil
		},
	}
	s.add(cmd)
	cmd.Flags().StringSliceVar(&ids, "ids", nil, "role assignment ids")
	return cmd
}

func (a *app) roleDefinitionListCmd() *cobra.Command {
	var name string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List role definitions",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client(cmd.Context())
			if err != nil {
				return err
			}
			filterName := name
			if isGUID(name) {
				filterName = ""
			}
			defs, err := c.roleDefinitions(cmd.Context(), filterName)
			if err != nil {
				return err
			}
			out := []any{}
			for _, d := range defs {
				f := flattenProps(d, map[string]string{"type": "roleType"})
				if isGUID(name) && !strings.EqualFold(str(f["name"]), name) {
					continue
				}
				out = append(out, f)
			}
			return a.print(out, func(v any) any {
				rows := []row{}
				for _, x := range v.([]any) {
					m := x.(map[string]any)
					rows = append(rows, newRow("Name", m["roleName"], "Type", m["roleType"], "Description", m["description"]))
				}
				return rows
			})
		},
	}
	cmd.Flags().StringVarP(&name, "name", "n", "", "role name or id")
	return cmd
}
