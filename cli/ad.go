package cli

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

func (a *app) adCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "ad", Short: "Manage the directory (service principals, applications' federated credentials)"}
	sp := &cobra.Command{Use: "sp", Short: "Manage service principals"}
	sp.AddCommand(a.spCreateForRBACCmd(), a.spShowCmd(), a.spListCmd(), a.spDeleteCmd())
	cmd.AddCommand(sp, a.appCmd())
	return cmd
}

// newGUID returns a random (version 4) GUID, as role assignment names are.
func newGUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// odataQuote quotes s for an OData string literal.
func odataQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// findSPs lists service principals matching an OData $filter such as
// appId eq '...'.
func (c *client) findSPs(ctx context.Context, filter string) ([]any, error) {
	q := url.Values{}
	if filter != "" {
		q.Set("$filter", filter)
	}
	out, err := c.graph(ctx, http.MethodGet, "/servicePrincipals", q, nil)
	if err != nil {
		return nil, err
	}
	m, _ := out.(map[string]any)
	vals, _ := m["value"].([]any)
	if vals == nil {
		vals = []any{}
	}
	return vals, nil
}

// spTable is az's table for service principals.
var spTable = tableOf(func(m map[string]any) row {
	return newRow("DisplayName", m["displayName"], "Id", m["id"], "AppId", m["appId"])
})

func (a *app) spCreateForRBACCmd() *cobra.Command {
	var name, role string
	var scopes []string
	cmd := &cobra.Command{
		Use:   "create-for-rbac",
		Short: "Create a service principal with a secret and, with --role and --scopes, role assignments",
		Example: `  custody ad sp create-for-rbac -n batch-app --role Contributor \
    --scopes /subscriptions/$SUB/resourceGroups/rg1`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 && !cmd.Flags().Changed("scopes") {
				return fmt.Errorf("unrecognized arguments: %s", strings.Join(args, " "))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			scopes = append(scopes, args...)
			if (role == "") != (len(scopes) == 0) {
				return errors.New("usage error: to create role assignments, specify both --role and --scopes")
			}
			if name == "" {
				name = "custody-cli-" + time.Now().UTC().Format("2006-01-02-15-04-05")
			}
			ctx := cmd.Context()
			c, err := a.client(ctx)
			if err != nil {
				return err
			}
			// Resolve the role before creating anything, so a bad role
			// leaves no principal behind.
			var roleID string
			if role != "" {
				if roleID, err = c.resolveRole(ctx, role); err != nil {
					return err
				}
			}
			existing, err := c.findSPs(ctx, "displayName eq "+odataQuote(name))
			if err != nil {
				return err
			}
			var sp map[string]any
			var password string
			if len(existing) > 0 {
				sp, _ = existing[0].(map[string]any)
				a.warn("Found an existing application instance: (id) %v. We will patch it.", sp["appId"])
				cred, err := c.graph(ctx, http.MethodPost, "/servicePrincipals/"+str(sp["id"])+"/addPassword", nil,
					map[string]any{"passwordCredential": map[string]any{"displayName": "rbac"}})
				if err != nil {
					return err
				}
				m, _ := cred.(map[string]any)
				password = str(m["secretText"])
			} else {
				out, err := c.graph(ctx, http.MethodPost, "/servicePrincipals", nil, map[string]any{"displayName": name})
				if err != nil {
					return err
				}
				sp, _ = out.(map[string]any)
				if creds, ok := sp["passwordCredentials"].([]any); ok && len(creds) > 0 {
					m, _ := creds[0].(map[string]any)
					password = str(m["secretText"])
				}
			}
			for _, s := range scopes {
				a.warn("Creating '%s' role assignment under scope '%s'", role, s)
				_, err := c.createRoleAssignment(ctx, s, roleID, str(sp["id"]), "ServicePrincipal", "")
				if err != nil && !isCode(err, "RoleAssignmentExists") {
					return err
				}
			}
			a.warn("The output includes credentials that you must protect. Be sure that you do not include these credentials in your code or check the credentials into your source control.")
			return a.print(map[string]any{
				"appId":       sp["appId"],
				"displayName": sp["displayName"],
				"password":    password,
				"tenant":      c.cred.TenantID,
			}, nil)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&name, "name", "n", "", "display name of the service principal")
	f.StringVar(&role, "role", "", "role to assign (name or id), with --scopes")
	f.StringArrayVar(&scopes, "scopes", nil, "space-separated scopes the role assignments apply to, e.g. /subscriptions/{id}/resourceGroups/{rg}")
	return cmd
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

func (a *app) spShowCmd() *cobra.Command {
	var id string
	cmd := &cobra.Command{
		Use:   "show",
		Short: "Show a service principal by object id or app id",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireFlag("--id", id); err != nil {
				return err
			}
			c, err := a.client(cmd.Context())
			if err != nil {
				return err
			}
			out, err := c.graph(cmd.Context(), http.MethodGet, "/servicePrincipals/"+id, nil, nil)
			if err != nil {
				return err
			}
			return a.print(out, spTable)
		},
	}
	cmd.Flags().StringVar(&id, "id", "", "object id or app id of the service principal")
	return cmd
}

func (a *app) spListCmd() *cobra.Command {
	var displayName, filter, spn string
	var all bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List service principals (including managed identities)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client(cmd.Context())
			if err != nil {
				return err
			}
			f := filter
			switch {
			case displayName != "":
				f = "displayName eq " + odataQuote(displayName)
			case spn != "":
				f = "appId eq " + odataQuote(spn)
			}
			out, err := c.findSPs(cmd.Context(), f)
			if err != nil {
				return err
			}
			return a.print(out, spTable)
		},
	}
	f := cmd.Flags()
	f.StringVar(&displayName, "display-name", "", "the service principal's display name")
	f.StringVar(&spn, "spn", "", "a service principal name (its app id)")
	f.StringVar(&filter, "filter", "", "OData filter: appId, displayName or id eq '...'")
	f.BoolVar(&all, "all", false, "list all entities (they always are)")
	return cmd
}

func (a *app) spDeleteCmd() *cobra.Command {
	var id string
	cmd := &cobra.Command{
		Use:   "delete",
		Short: "Delete a service principal by object id or app id",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireFlag("--id", id); err != nil {
				return err
			}
			c, err := a.client(cmd.Context())
			if err != nil {
				return err
			}
			_, err = c.graph(cmd.Context(), http.MethodDelete, "/servicePrincipals/"+id, nil, nil)
			return err
		},
	}
	cmd.Flags().StringVar(&id, "id", "", "object id or app id of the service principal")
	return cmd
}
