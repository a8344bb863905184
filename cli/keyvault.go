package cli

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/spf13/cobra"
)

// API versions of the key vault: the resource manager's (armkeyvault
// v1.5.0 and az send 2024-11-01) and the data plane's (azkeys v1.5.0).
const (
	apiKeyVault     = "2024-11-01"
	apiKeyVaultData = "2025-07-01"
	vaultType       = "Microsoft.KeyVault/vaults"
)

func (a *app) keyvaultCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "keyvault", Short: "Manage key vaults, their access policies and keys"}
	cmd.AddCommand(a.kvCreateCmd(), a.kvShowCmd(), a.kvListCmd(), a.kvUpdateCmd(), a.kvDeleteCmd(),
		a.kvRecoverCmd(), a.kvPurgeCmd(), a.kvListDeletedCmd(), a.kvSetPolicyCmd(), a.kvDeletePolicyCmd(),
		a.keyCmd(), a.kvAuditCmd())
	return cmd
}

// azArgs makes cmd parse its flags the way az does: each flag in multi
// takes every value that follows it (`--key-permissions get wrapKey`), and
// each bool flag in bools may be given alone or followed by true or false
// (`--enable-purge-protection`, `--enable-purge-protection false`). pflag
// cannot express either, so the command parses its own arguments after
// rewriting them to `--flag=value` form.
func (a *app) azArgs(cmd *cobra.Command, multi, bools []string) {
	run := cmd.RunE
	cmd.DisableFlagParsing = true
	cmd.Args = cobra.ArbitraryArgs
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		var out []string
		for i := 0; i < len(args); i++ {
			tok := args[i]
			if tok == "--" {
				out = append(out, args[i:]...)
				break
			}
			name, hasValue := strings.CutPrefix(tok, "--")
			if !hasValue || strings.Contains(name, "=") {
				out = append(out, tok)
				continue
			}
			switch {
			case slices.Contains(bools, name):
				if i+1 < len(args) {
					switch strings.ToLower(args[i+1]) {
					case "true", "false", "yes", "no":
						v := strings.ToLower(args[i+1])
						out = append(out, "--"+name+"="+fmt.Sprint(v == "true" || v == "yes"))
						i++
						continue
					}
				}
				out = append(out, tok)
			case slices.Contains(multi, name):
				n := 0
				for i+1 < len(args) && !strings.HasPrefix(args[i+1], "-") {
					out = append(out, "--"+name+"="+args[i+1])
					i++
					n++
				}
				if n == 0 {
					out = append(out, tok)
				}
			default:
				out = append(out, tok)
			}
		}
		fs := cmd.Flags()
		fs.AddFlagSet(cmd.InheritedFlags())
		if err := fs.Parse(out); err != nil {
			return err
		}
		if h, _ := fs.GetBool("help"); h {
			return cmd.Help()
		}
		if rest := fs.Args(); len(rest) > 0 {
			return fmt.Errorf("unrecognized arguments: %s", strings.Join(rest, " "))
		}
		if err := a.prepare(cmd); err != nil {
			return err
		}
		return run(cmd, nil)
	}
}

// vaultPath is the resource path of a vault in a group.
func (c *client) vaultPath(group, name string) string {
	return c.groupPath(group) + "/providers/" + vaultType + "/" + name
}

// findVault returns the resource path and body of a live vault. Without a
// group it looks the vault up in the subscription, as az does.
func (c *client) findVault(ctx context.Context, name, group string) (string, map[string]any, error) {
	if err := requireFlag("--name/-n", name); err != nil {
		return "", nil, err
	}
	if group != "" {
		path := c.vaultPath(group, name)
		out, _, err := c.arm(ctx, http.MethodGet, path, apiKeyVault, nil, nil)
		if err != nil {
			return "", nil, err
		}
		m, _ := out.(map[string]any)
		return path, m, nil
	}
	all, err := c.armList(ctx, c.subscriptionPath()+"/providers/"+vaultType, apiKeyVault, nil)
	if err != nil {
		return "", nil, err
	}
	for _, v := range all {
		m, _ := v.(map[string]any)
		if strings.EqualFold(str(m["name"]), name) {
			return str(m["id"]), m, nil
		}
	}
	return "", nil, &Error{Status: http.StatusNotFound, Code: "ResourceNotFound",
		Message: fmt.Sprintf("The Vault '%s' not found within subscription. List vaults with `custody keyvault list`; a deleted vault shows in `custody keyvault list-deleted`.", name)}
}

// withGroup adds resourceGroup to a resource body, as az prints it.
func withGroup(v any) any {
	m, ok := v.(map[string]any)
	if !ok {
		return v
	}
	m["resourceGroup"] = resourceGroupOf(str(m["id"]))
	return m
}

// vaultTable is az's table for vaults.
var vaultTable = tableOf(func(m map[string]any) row {
	return newRow("Location", m["location"], "Name", m["name"], "ResourceGroup", m["resourceGroup"])
})

func (a *app) kvCreateCmd() *cobra.Command {
	var name, group, location, sku string
	var retention int
	var purgeProtection, rbac bool
	var tags []string
	cmd := &cobra.Command{
		Use:   "create",
		Short: "Create a key vault",
		Long: "Create a key vault. Soft delete is always on. Unless --enable-rbac-authorization is true, the signed-in\n" +
			"principal gets an access policy with every key, secret and certificate permission, as az gives.",
		Example: "  custody keyvault create -n vault1 -g rg1 -l westus2 --enable-purge-protection true --retention-days 90",
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if err := requireFlag("--name/-n", name); err != nil {
				return err
			}
			if err := requireFlag("--resource-group/-g", group); err != nil {
				return err
			}
			c, err := a.client(ctx)
			if err != nil {
				return err
			}
			if location == "" {
				if location, err = c.groupLocation(ctx, group); err != nil {
					return err
				}
			}
			props := map[string]any{
				"tenantId":         c.cred.TenantID,
				"sku":              map[string]any{"family": "A", "name": strings.ToLower(sku)},
				"enableSoftDelete": true,
			}
			f := cmd.Flags()
			if f.Changed("retention-days") {
				props["softDeleteRetentionInDays"] = retention
			}
			if f.Changed("enable-purge-protection") {
				props["enablePurgeProtection"] = purgeProtection
			}
			props["enableRbacAuthorization"] = rbac
			// No accessPolicies: the server gives the creator a full policy
			// when it creates a vault without any and RBAC is off, so the
			// CLI does not add one itself.
			body := map[string]any{"location": location, "properties": props}
			if f.Changed("tags") {
				body["tags"] = parseTags(tags, nil)
			}
			out, _, err := c.arm(ctx, http.MethodPut, c.vaultPath(group, name), apiKeyVault, nil, body)
			if err != nil {
				return err
			}
			return a.print(withGroup(out), vaultTable)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&name, "name", "n", "", "name of the key vault (3-24 letters, digits and hyphens)")
	f.StringVarP(&group, "resource-group", "g", "", "name of the resource group")
	f.StringVarP(&location, "location", "l", "", "location (default: the resource group's)")
	f.StringVar(&sku, "sku", "standard", "standard or premium")
	f.IntVar(&retention, "retention-days", 90, "days a deleted vault and its keys stay recoverable (7-90); fixed at creation")
	f.BoolVar(&purgeProtection, "enable-purge-protection", false, "refuse purging deleted vaults and keys before their retention ends (irreversible) [true|false]")
	f.BoolVar(&rbac, "enable-rbac-authorization", false, "authorize data plane calls with role assignments instead of access policies [true|false]")
	f.StringArrayVar(&tags, "tags", nil, "space-separated tags: key[=value] [key[=value] ...]")
	a.azArgs(cmd, []string{"tags"}, []string{"enable-purge-protection", "enable-rbac-authorization"})
	return cmd
}

func (a *app) kvShowCmd() *cobra.Command {
	var name, group string
	cmd := &cobra.Command{
		Use:   "show",
		Short: "Show a key vault",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client(cmd.Context())
			if err != nil {
				return err
			}
			_, v, err := c.findVault(cmd.Context(), name, group)
			if err != nil {
				return err
			}
			return a.print(withGroup(v), nil)
		},
	}
	cmd.Flags().StringVarP(&name, "name", "n", "", "name of the key vault")
	cmd.Flags().StringVarP(&group, "resource-group", "g", "", "name of the resource group (default: found by name)")
	return cmd
}

func (a *app) kvListCmd() *cobra.Command {
	return a.armListCmd("List key vaults in a resource group, or in the whole subscription", vaultType, apiKeyVault, withGroup, vaultTable)
}

func (a *app) kvUpdateCmd() *cobra.Command {
	var name, group, publicAccess string
	var retention int
	var purgeProtection, rbac, softDelete bool
	var tags []string
	cmd := &cobra.Command{
		Use:     "update",
		Short:   "Update a key vault's properties",
		Example: "  custody keyvault update -n vault1 --enable-purge-protection true",
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			c, err := a.client(ctx)
			if err != nil {
				return err
			}
			path, _, err := c.findVault(ctx, name, group)
			if err != nil {
				return err
			}
			f := cmd.Flags()
			props := map[string]any{}
			if f.Changed("retention-days") {
				props["softDeleteRetentionInDays"] = retention
			}
			if f.Changed("enable-purge-protection") {
				props["enablePurgeProtection"] = purgeProtection
			}
			if f.Changed("enable-rbac-authorization") {
				props["enableRbacAuthorization"] = rbac
			}
			if f.Changed("enable-soft-delete") {
				props["enableSoftDelete"] = softDelete
			}
			if f.Changed("public-network-access") {
				props["publicNetworkAccess"] = publicAccess
			}
			body := map[string]any{"properties": props}
			if f.Changed("tags") {
				body["tags"] = parseTags(tags, nil)
			}
			out, _, err := c.arm(ctx, http.MethodPatch, path, apiKeyVault, nil, body)
			if err != nil {
				return err
			}
			return a.print(withGroup(out), vaultTable)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&name, "name", "n", "", "name of the key vault")
	f.StringVarP(&group, "resource-group", "g", "", "name of the resource group (default: found by name)")
	f.IntVar(&retention, "retention-days", 90, "soft delete retention in days (cannot change after creation)")
	f.BoolVar(&purgeProtection, "enable-purge-protection", false, "turn purge protection on (irreversible) [true|false]")
	f.BoolVar(&rbac, "enable-rbac-authorization", false, "use role assignments instead of access policies [true|false]")
	f.BoolVar(&softDelete, "enable-soft-delete", true, "soft delete is always on; false is refused [true|false]")
	f.StringVar(&publicAccess, "public-network-access", "", "Enabled or Disabled")
	f.StringArrayVar(&tags, "tags", nil, "space-separated tags: key[=value] [key[=value] ...]; \"\" clears them")
	a.azArgs(cmd, []string{"tags"}, []string{"enable-purge-protection", "enable-rbac-authorization", "enable-soft-delete"})
	return cmd
}

func (a *app) kvDeleteCmd() *cobra.Command {
	var name, group string
	cmd := &cobra.Command{
		Use:   "delete",
		Short: "Delete a key vault (soft delete: it can be recovered until its retention period ends)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client(cmd.Context())
			if err != nil {
				return err
			}
			path, _, err := c.findVault(cmd.Context(), name, group)
			if err != nil {
				return err
			}
			_, _, err = c.arm(cmd.Context(), http.MethodDelete, path, apiKeyVault, nil, nil)
			return err
		},
	}
	cmd.Flags().StringVarP(&name, "name", "n", "", "name of the key vault")
	cmd.Flags().StringVarP(&group, "resource-group", "g", "", "name of the resource group (default: found by name)")
	return cmd
}

// findDeletedVault returns a deleted vault, by location if given, else by
// searching the subscription's deleted vaults.
func (c *client) findDeletedVault(ctx context.Context, name, location string) (map[string]any, error) {
	if err := requireFlag("--name/-n", name); err != nil {
		return nil, err
	}
	if location != "" {
		out, _, err := c.arm(ctx, http.MethodGet, c.subscriptionPath()+"/providers/Microsoft.KeyVault/locations/"+location+"/deletedVaults/"+name, apiKeyVault, nil, nil)
		if err != nil {
			return nil, err
		}
		m, _ := out.(map[string]any)
		return m, nil
	}
	all, err := c.armList(ctx, c.subscriptionPath()+"/providers/Microsoft.KeyVault/deletedVaults", apiKeyVault, nil)
	if err != nil {
		return nil, err
	}
	for _, v := range all {
		m, _ := v.(map[string]any)
		if strings.EqualFold(str(m["name"]), name) {
			return m, nil
		}
	}
	return nil, &Error{Status: http.StatusNotFound, Code: "DeletedVaultNotFound",
		Message: fmt.Sprintf("No deleted vault named '%s' was found in the subscription. `custody keyvault list-deleted` lists them.", name)}
}

func deletedProps(m map[string]any) map[string]any {
	p, _ := m["properties"].(map[string]any)
	if p == nil {
		p = map[string]any{}
	}
	return p
}

func (a *app) kvRecoverCmd() *cobra.Command {
	var name, group, location string
	cmd := &cobra.Command{
		Use:   "recover",
		Short: "Recover a deleted key vault with its keys and access policies",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			c, err := a.client(ctx)
			if err != nil {
				return err
			}
			d, err := c.findDeletedVault(ctx, name, location)
			if err != nil {
				return err
			}
			p := deletedProps(d)
			if group == "" {
				group = resourceGroupOf(str(p["vaultId"]))
			}
			body := map[string]any{
				"location": str(p["location"]),
				"properties": map[string]any{
					"tenantId": c.cred.TenantID, "sku": map[string]any{"family": "A", "name": "standard"}, "createMode": "recover",
				},
			}
			out, _, err := c.arm(ctx, http.MethodPut, c.vaultPath(group, str(d["name"])), apiKeyVault, nil, body)
			if err != nil {
				return err
			}
			return a.print(withGroup(out), vaultTable)
		},
	}
	cmd.Flags().StringVarP(&name, "name", "n", "", "name of the deleted key vault")
	cmd.Flags().StringVarP(&group, "resource-group", "g", "", "resource group of the deleted vault (default: the one it was deleted from)")
	cmd.Flags().StringVarP(&location, "location", "l", "", "location of the deleted vault (default: found by name)")
	return cmd
}

func (a *app) kvPurgeCmd() *cobra.Command {
	var name, location string
	var noWait bool
	cmd := &cobra.Command{
		Use:   "purge",
		Short: "Permanently delete a deleted key vault and its keys (refused under purge protection)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			c, err := a.client(ctx)
			if err != nil {
				return err
			}
			d, err := c.findDeletedVault(ctx, name, location)
			if err != nil {
				return err
			}
			loc := str(deletedProps(d)["location"])
			_, resp, err := c.arm(ctx, http.MethodPost, c.subscriptionPath()+"/providers/Microsoft.KeyVault/locations/"+loc+"/deletedVaults/"+str(d["name"])+"/purge", apiKeyVault, nil, nil)
			if err != nil || noWait {
				return err
			}
			return c.poll(ctx, resp)
		},
	}
	cmd.Flags().StringVarP(&name, "name", "n", "", "name of the deleted key vault")
	cmd.Flags().StringVarP(&location, "location", "l", "", "location of the deleted vault (default: found by name)")
	cmd.Flags().BoolVar(&noWait, "no-wait", false, "do not wait for the purge to finish")
	return cmd
}

func (a *app) kvListDeletedCmd() *cobra.Command {
	var resourceType string
	cmd := &cobra.Command{
		Use:   "list-deleted",
		Short: "List deleted key vaults that can still be recovered or purged",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if resourceType != "" && !strings.EqualFold(resourceType, "vault") {
				return fmt.Errorf("argument --resource-type: invalid choice: '%s' (this server has vaults only: choose 'vault')", resourceType)
			}
			c, err := a.client(cmd.Context())
			if err != nil {
				return err
			}
			all, err := c.armList(cmd.Context(), c.subscriptionPath()+"/providers/Microsoft.KeyVault/deletedVaults", apiKeyVault, nil)
			if err != nil {
				return err
			}
			return a.print(all, nil)
		},
	}
	cmd.Flags().StringVar(&resourceType, "resource-type", "", "vault (the only kind this server has)")
	return cmd
}

// principalFlags are set-policy's and delete-policy's ways to name a
// principal.
type principalFlags struct{ objectID, spn, upn string }

func (p *principalFlags) add(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&p.objectID, "object-id", "", "object id of the principal (for a managed identity, its principalId)")
	f.StringVar(&p.spn, "spn", "", "client (app) id or display name of a service principal")
	f.StringVar(&p.upn, "upn", "", "name of a user; this server has no users, so it is looked up as a display name")
}

// resolve returns the object id the flags name, looked up in the directory
// for --spn and --upn.
func (p *principalFlags) resolve(ctx context.Context, c *client) (string, error) {
	n := 0
	for _, v := range []string{p.objectID, p.spn, p.upn} {
		if v != "" {
			n++
		}
	}
	if n != 1 {
		return "", errors.New("usage error: specify exactly one of --object-id, --spn, --upn")
	}
	if p.objectID != "" {
		if !isGUID(p.objectID) {
			return "", fmt.Errorf("argument --object-id: '%s' is not an object id (a GUID); use --spn for a client id or name", p.objectID)
		}
		return p.objectID, nil
	}
	name, filters := p.spn, []string{}
	if isGUID(name) {
		filters = append(filters, "appId eq "+odataQuote(name), "id eq "+odataQuote(name))
	}
	if p.upn != "" {
		name = p.upn
	}
	filters = append(filters, "displayName eq "+odataQuote(name))
	for _, f := range filters {
		sps, err := c.findSPs(ctx, f)
		if err != nil {
			return "", err
		}
		if len(sps) > 1 {
			return "", fmt.Errorf("more than one principal is named '%s'; use --object-id", name)
		}
		if len(sps) == 1 {
			m, _ := sps[0].(map[string]any)
			return str(m["id"]), nil
		}
	}
	return "", fmt.Errorf("unable to find user or service principal '%s' in the directory. `custody ad sp list` lists them; a managed identity is named by its principalId with --object-id", name)
}

// policies reads a vault body's access policies.
func policies(v map[string]any) []any {
	props, _ := v["properties"].(map[string]any)
	ps, _ := props["accessPolicies"].([]any)
	return ps
}

func rbacOn(v map[string]any) bool {
	props, _ := v["properties"].(map[string]any)
	on, _ := props["enableRbacAuthorization"].(bool)
	return on
}

// replacePolicies writes a vault's whole access policy list and returns the
// vault as it is afterwards.
func (c *client) replacePolicies(ctx context.Context, path string, ps []any) (any, error) {
	if ps == nil {
		ps = []any{}
	}
	if _, _, err := c.arm(ctx, http.MethodPut, path+"/accessPolicies/replace", apiKeyVault, nil,
		map[string]any{"properties": map[string]any{"accessPolicies": ps}}); err != nil {
		return nil, err
	}
	out, _, err := c.arm(ctx, http.MethodGet, path, apiKeyVault, nil, nil)
	return out, err
}

func (a *app) kvSetPolicyCmd() *cobra.Command {
	var name, group string
	var who principalFlags
	var keys, secrets, certs, storage []string
	cmd := &cobra.Command{
		Use:   "set-policy",
		Short: "Set a principal's access policy on a key vault (the given kinds of permissions are replaced)",
		Example: "  custody keyvault set-policy -n vault1 --object-id $PRINCIPAL_ID --key-permissions get wrapKey unwrapKey\n" +
			"  custody keyvault set-policy -n vault1 --spn my-app --key-permissions all",
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			c, err := a.client(ctx)
			if err != nil {
				return err
			}
			f := cmd.Flags()
			if !f.Changed("key-permissions") && !f.Changed("secret-permissions") && !f.Changed("certificate-permissions") && !f.Changed("storage-permissions") {
				return errors.New("usage error: specify at least one of --key-permissions, --secret-permissions, --certificate-permissions, --storage-permissions")
			}
			path, v, err := c.findVault(ctx, name, group)
			if err != nil {
				return err
			}
			if rbacOn(v) {
				return fmt.Errorf("cannot set policies on vault '%s': it uses role-based access (enableRbacAuthorization). Assign a role instead, e.g. `custody role assignment create --role \"Key Vault Crypto Service Encryption User\" --assignee ... --scope %s`", name, path)
			}
			oid, err := who.resolve(ctx, c)
			if err != nil {
				return err
			}
			ps := policies(v)
			var entry map[string]any
			for _, p := range ps {
				m, _ := p.(map[string]any)
				if strings.EqualFold(str(m["objectId"]), oid) && str(m["applicationId"]) == "" {
					entry = m
				}
			}
			if entry == nil {
				entry = map[string]any{"tenantId": c.cred.TenantID, "objectId": oid, "permissions": map[string]any{}}
				ps = append(ps, entry)
			}
			perms, _ := entry["permissions"].(map[string]any)
			if perms == nil {
				perms = map[string]any{}
				entry["permissions"] = perms
			}
			set := func(flag, kind string, vals []string) {
				if f.Changed(flag) {
					list := []any{}
					for _, v := range vals {
						list = append(list, v)
					}
					perms[kind] = list
				}
			}
			set("key-permissions", "keys", keys)
			set("secret-permissions", "secrets", secrets)
			set("certificate-permissions", "certificates", certs)
			set("storage-permissions", "storage", storage)
			out, err := c.replacePolicies(ctx, path, ps)
			if err != nil {
				return err
			}
			return a.print(withGroup(out), nil)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&name, "name", "n", "", "name of the key vault")
	f.StringVarP(&group, "resource-group", "g", "", "name of the resource group (default: found by name)")
	who.add(cmd)
	f.StringArrayVar(&keys, "key-permissions", nil, "space-separated key permissions: get list create update import delete recover backup restore purge wrapKey unwrapKey encrypt decrypt sign verify rotate getrotationpolicy setrotationpolicy all")
	f.StringArrayVar(&secrets, "secret-permissions", nil, "space-separated secret permissions")
	f.StringArrayVar(&certs, "certificate-permissions", nil, "space-separated certificate permissions")
	f.StringArrayVar(&storage, "storage-permissions", nil, "space-separated storage permissions")
	a.azArgs(cmd, []string{"key-permissions", "secret-permissions", "certificate-permissions", "storage-permissions"}, nil)
	return cmd
}

func (a *app) kvDeletePolicyCmd() *cobra.Command {
	var name, group string
	var who principalFlags
	cmd := &cobra.Command{
		Use:   "delete-policy",
		Short: "Remove a principal's access policy from a key vault",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			c, err := a.client(ctx)
			if err != nil {
				return err
			}
			path, v, err := c.findVault(ctx, name, group)
			if err != nil {
				return err
			}
			oid, err := who.resolve(ctx, c)
			if err != nil {
				return err
			}
			ps := policies(v)
			kept := []any{}
			for _, p := range ps {
				m, _ := p.(map[string]any)
				if !strings.EqualFold(str(m["objectId"]), oid) {
					kept = append(kept, p)
				}
			}
			if len(kept) == len(ps) {
				return fmt.Errorf("no matching policies found: vault '%s' has no access policy for object id %s", name, oid)
			}
			out, err := c.replacePolicies(ctx, path, kept)
			if err != nil {
				return err
			}
			return a.print(withGroup(out), nil)
		},
	}
	cmd.Flags().StringVarP(&name, "name", "n", "", "name of the key vault")
	cmd.Flags().StringVarP(&group, "resource-group", "g", "", "name of the resource group (default: found by name)")
	who.add(cmd)
	return cmd
}

func (a *app) kvAuditCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "audit", Short: "Read the key service's audit log of a vault"}
	var vault, key string
	var top int
	list := &cobra.Command{
		Use:     "list",
		Short:   "List a vault's audit records, most recent first (needs Key Vault Administrator, Owner or Contributor on the vault)",
		Example: "  custody keyvault audit list --vault-name vault1 --name key1 --top 20 -o table",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireFlag("--vault-name", vault); err != nil {
				return err
			}
			c, err := a.client(cmd.Context())
			if err != nil {
				return err
			}
			q := url.Values{"api-version": {apiKeyVaultData}}
			if key != "" {
				q.Set("key", key)
			}
			if cmd.Flags().Changed("top") {
				q.Set("top", fmt.Sprint(top))
			}
			out, _, err := c.call(cmd.Context(), http.MethodGet, c.vaultURL(vault)+"/audit?"+q.Encode(), c.vaultScope(), nil)
			if err != nil {
				return err
			}
			m, _ := out.(map[string]any)
			vals, _ := m["value"].([]any)
			if vals == nil {
				vals = []any{}
			}
			return a.print(vals, auditTable)
		},
	}
	list.Flags().StringVar(&vault, "vault-name", "", "name of the key vault")
	list.Flags().StringVarP(&key, "name", "n", "", "only records of this key")
	list.Flags().IntVar(&top, "top", 100, "at most this many records")
	cmd.AddCommand(list)
	return cmd
}

func auditTable(v any) any {
	rows := []row{}
	list, _ := v.([]any)
	for _, x := range list {
		m, _ := x.(map[string]any)
		rows = append(rows, newRow("Time", m["time"], "Caller", m["callerObjectId"], "Key", m["key"], "Version", m["version"],
			"Operation", m["operation"], "Outcome", m["outcome"]))
	}
	return rows
}
