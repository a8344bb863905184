package cli

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// apiBatch is the Microsoft.Batch api-version the CLI sends (az's too).
const apiBatch = "2024-07-01"

const batchAccountType = "Microsoft.Batch/batchAccounts"

func (a *app) batchCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "batch", Short: "Manage batch accounts"}
	account := &cobra.Command{Use: "account", Short: "Manage batch accounts: identity, customer-managed keys, tags"}
	account.AddCommand(a.batchAccountCreateCmd(), a.batchAccountShowCmd(), a.batchAccountListCmd(),
		a.batchAccountSetCmd(), a.batchAccountDeleteCmd(), a.batchAccountReencryptCmd())
	cmd.AddCommand(account, a.batchPoolCmd(), a.batchNodeCmd(), a.batchTaskCmd(), a.batchJobCmd(), a.batchJobScheduleCmd(), a.batchCertificateCmd())
	return cmd
}

// batchAccountPath returns the account's resource path from -n and -g.
func (c *client) batchAccountPath(name, group string) (string, error) {
	if err := requireFlag("--resource-group/-g", group); err != nil {
		return "", err
	}
	if err := requireFlag("--name/-n", name); err != nil {
		return "", err
	}
	return c.groupPath(group) + "/providers/" + batchAccountType + "/" + name, nil
}

// flattenBatchAccount gives an account az's shape: properties at the top
// level (accountEndpoint, encryption, provisioningState, ...), plus
// resourceGroup; identity stays an object, so --query identity prints it.
func flattenBatchAccount(v any) any { return flattenIdentity(v) }

// batchAccountTable is the table for accounts: name, location, group, key
// source and whether the key is reachable.
var batchAccountTable = tableOf(func(m map[string]any) row {
	enc, _ := m["encryption"].(map[string]any)
	st, _ := m["encryptionStatus"].(map[string]any)
	return newRow("Name", m["name"], "Location", m["location"], "ResourceGroup", m["resourceGroup"],
		"KeySource", enc["keySource"], "KeyState", st["state"])
})

// normalizeLocation turns a region's display name ("West US 2") into its
// name ("westus2").
func normalizeLocation(l string) string {
	return strings.ToLower(strings.ReplaceAll(strings.TrimSpace(l), " ", ""))
}

// parseLocations reads the --locations spelling of older docs:
// regionName='West US 2' (possibly with other key=value pairs, which are
// ignored).
func parseLocations(vals []string) (string, error) {
	for _, v := range vals {
		v = strings.TrimSpace(v)
		if v != "" && !strings.Contains(v, "=") {
			return normalizeLocation(strings.Trim(v, `'"`)), nil
		}
		i := strings.Index(strings.ToLower(v), "regionname=")
		if i < 0 {
			continue
		}
		val := v[i+len("regionname="):]
		// The value runs to the next " key=" pair, if any.
		if j := strings.Index(val, "="); j >= 0 {
			if k := strings.LastIndex(val[:j], " "); k >= 0 {
				val = val[:k]
			}
		}
		if loc := normalizeLocation(strings.Trim(strings.TrimSpace(val), `'"`)); loc != "" {
			return loc, nil
		}
	}
	return "", errors.New("--locations: give the region as regionName=REGION, e.g. --locations regionName='West US 2' (or use --location westus2)")
}

// encryptionFlags adds --encryption-key-source and
// --encryption-key-identifier, with the underscore spellings of older docs
// as hidden aliases.
func encryptionFlags(cmd *cobra.Command, source, identifier *string) {
	f := cmd.Flags()
	f.StringVar(source, "encryption-key-source", "", "the encryption key source: Microsoft.Batch (service-managed) or Microsoft.KeyVault (your key)")
	f.StringVar(identifier, "encryption-key-identifier", "", "the key identifier of your key in a key vault, with or without a version (https://{vault}.vault.{domain}:{port}/keys/{name}[/{version}])")
	f.StringVar(source, "encryption_key_source", "", "same as --encryption-key-source")
	f.StringVar(identifier, "encryption_key_identifier", "", "same as --encryption-key-identifier")
	_ = f.MarkHidden("encryption_key_source")
	_ = f.MarkHidden("encryption_key_identifier")
}

// keySource checks and spells a key source as Azure does.
func keySource(v string) (string, error) {
	for _, s := range []string{"Microsoft.Batch", "Microsoft.KeyVault"} {
		if strings.EqualFold(v, s) {
			return s, nil
		}
	}
	return "", fmt.Errorf("argument --encryption-key-source: invalid choice: '%s' (choose from 'Microsoft.Batch', 'Microsoft.KeyVault')", v)
}

// encryptionBody builds properties.encryption from the flags; nil if
// neither is given. An identifier alone means Microsoft.KeyVault.
func encryptionBody(source, identifier string) (map[string]any, error) {
	if source == "" && identifier == "" {
		return nil, nil
	}
	if source == "" {
		source = "Microsoft.KeyVault"
	}
	src, err := keySource(source)
	if err != nil {
		return nil, err
	}
	enc := map[string]any{"keySource": src}
	if identifier != "" {
		if src != "Microsoft.KeyVault" {
			return nil, errors.New("--encryption-key-identifier needs --encryption-key-source Microsoft.KeyVault")
		}
		enc["keyVaultProperties"] = map[string]any{"keyIdentifier": identifier}
	} else if src == "Microsoft.KeyVault" {
		return nil, errors.New("--encryption-key-source Microsoft.KeyVault needs --encryption-key-identifier (the key's identifier from the vault)")
	}
	return enc, nil
}

// waitOperation follows a long-running operation's Location until it is no
// longer 202 and returns the final body (the account, for a create).
func (c *client) waitOperation(ctx context.Context, out any, resp *http.Response) (any, error) {
	for resp != nil && resp.StatusCode == http.StatusAccepted {
		loc := resp.Header.Get("Location")
		if loc == "" {
			return out, nil
		}
		wait := time.Second
		if ms, err := strconv.Atoi(resp.Header.Get("Retry-After-Ms")); err == nil && ms >= 0 {
			wait = time.Duration(ms) * time.Millisecond
		} else if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s >= 0 {
			wait = time.Duration(s) * time.Second
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(min(wait, 30*time.Second)):
		}
		var err error
		if out, resp, err = c.call(ctx, http.MethodGet, loc, scopeManagement, nil); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (a *app) batchAccountCreateCmd() *cobra.Command {
	var name, group, location, identity, srcKey, keyID string
	var locations, userAssigned, tags []string
	var systemAssigned, noWait bool
	cmd := &cobra.Command{
		Use:   "create",
		Short: "Create a batch account",
		Example: `  custody batch account create -n mybatchaccount -g rg1 -l westus2 --identity SystemAssigned
  custody batch account create -n mybatchaccount -g rg1 --locations regionName='West US 2' --identity 'SystemAssigned'
  custody batch account create -n acct2 -g rg1 -l westus2 --identity UserAssigned --mi-user-assigned /subscriptions/.../userAssignedIdentities/id1 \
      --encryption-key-source Microsoft.KeyVault --encryption-key-identifier https://kv1.vault.localhost:8443/keys/k1`,
		Args: tagArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			c, err := a.client(ctx)
			if err != nil {
				return err
			}
			path, err := c.batchAccountPath(name, group)
			if err != nil {
				return err
			}
			if location == "" && len(locations) > 0 {
				if location, err = parseLocations(locations); err != nil {
					return err
				}
			}
			if location == "" {
				// Like az's other create commands: the group's location.
				if location, err = c.groupLocation(ctx, group); err != nil {
					return err
				}
			}
			body := map[string]any{"location": normalizeLocation(location)}
			if t := parseTags(tags, args); len(t) > 0 {
				body["tags"] = t
			}
			idType := identity
			if idType == "" {
				switch {
				case len(userAssigned) > 0:
					idType = "UserAssigned"
				case systemAssigned:
					idType = "SystemAssigned"
				}
			}
			if idType != "" {
				var canon string
				for _, t := range []string{"None", "SystemAssigned", "UserAssigned"} {
					if strings.EqualFold(strings.Trim(idType, `'"`), t) {
						canon = t
					}
				}
				if canon == "" {
					return fmt.Errorf("argument --identity: invalid choice: '%s' (choose from 'None', 'SystemAssigned', 'UserAssigned')", idType)
				}
				ident := map[string]any{"type": canon}
				if canon == "UserAssigned" {
					if len(userAssigned) == 0 {
						return errors.New("--identity UserAssigned needs --mi-user-assigned IDENTITY_RESOURCE_ID (see custody identity show --query id)")
					}
					uas := map[string]any{}
					for _, u := range userAssigned {
						uas[u] = map[string]any{}
					}
					ident["userAssignedIdentities"] = uas
				} else if len(userAssigned) > 0 {
					return fmt.Errorf("--mi-user-assigned goes with --identity UserAssigned, not %s", canon)
				}
				body["identity"] = ident
			}
			enc, err := encryptionBody(srcKey, keyID)
			if err != nil {
				return err
			}
			if enc != nil {
				body["properties"] = map[string]any{"encryption": enc}
			}
			out, resp, err := c.arm(ctx, http.MethodPut, path, apiBatch, nil, body)
			if err != nil || noWait {
				return err
			}
			if out, err = c.waitOperation(ctx, out, resp); err != nil {
				return err
			}
			if out == nil {
				if out, _, err = c.arm(ctx, http.MethodGet, path, apiBatch, nil, nil); err != nil {
					return err
				}
			}
			return a.print(flattenBatchAccount(out), batchAccountTable)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&name, "name", "n", "", "name of the batch account (3 to 24 lowercase letters and digits)")
	f.StringVarP(&group, "resource-group", "g", "", "name of the resource group")
	f.StringVarP(&location, "location", "l", "", "location, e.g. westus2 (default: the resource group's)")
	f.StringArrayVar(&locations, "locations", nil, "location in the form regionName=REGION, e.g. regionName='West US 2'")
	_ = f.MarkHidden("locations")
	f.StringVar(&identity, "identity", "", "managed identity type: SystemAssigned, UserAssigned or None")
	f.BoolVar(&systemAssigned, "mi-system-assigned", false, "give the account a system-assigned identity")
	f.StringArrayVar(&userAssigned, "mi-user-assigned", nil, "resource id of a user-assigned identity to attach (with --identity UserAssigned)")
	encryptionFlags(cmd, &srcKey, &keyID)
	f.StringArrayVar(&tags, "tags", nil, "space-separated tags: key[=value] [key[=value] ...]")
	f.BoolVar(&noWait, "no-wait", false, "do not wait for the long-running operation to finish")
	return cmd
}

func (a *app) batchAccountShowCmd() *cobra.Command {
	var name, group string
	cmd := &cobra.Command{
		Use:     "show",
		Short:   "Show a batch account, including its identity and the state of its key (encryptionStatus)",
		Example: "  custody batch account show -n mybatchaccount -g rg1 --query identity",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.client(cmd.Context())
			if err != nil {
				return err
			}
			path, err := c.batchAccountPath(name, group)
			if err != nil {
				return err
			}
			out, _, err := c.arm(cmd.Context(), http.MethodGet, path, apiBatch, nil, nil)
			if err != nil {
				return err
			}
			return a.print(flattenBatchAccount(out), batchAccountTable)
		},
	}
	cmd.Flags().StringVarP(&name, "name", "n", "", "name of the batch account")
	cmd.Flags().StringVarP(&group, "resource-group", "g", "", "name of the resource group")
	return cmd
}

func (a *app) batchAccountListCmd() *cobra.Command {
	return a.armListCmd("List batch accounts in a resource group, or in the whole subscription", batchAccountType, apiBatch, flattenBatchAccount, batchAccountTable)
}

func (a *app) batchAccountSetCmd() *cobra.Command {
	var name, group, srcKey, keyID string
	var tags []string
	cmd := &cobra.Command{
		Use:   "set",
		Short: "Update a batch account: its key (customer-managed or Microsoft.Batch) and tags",
		Example: `  custody batch account set -n mybatchaccount -g rg1 --encryption-key-source Microsoft.KeyVault --encryption-key-identifier https://kv1.vault.localhost:8443/keys/k1/0123...
  custody batch account set -n mybatchaccount -g rg1 --encryption_key_identifier https://kv1.vault.localhost:8443/keys/k2
  custody batch account set -n mybatchaccount -g rg1 --encryption-key-source Microsoft.Batch`,
		Args: tagArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			c, err := a.client(ctx)
			if err != nil {
				return err
			}
			path, err := c.batchAccountPath(name, group)
			if err != nil {
				return err
			}
			body := map[string]any{}
			if cmd.Flags().Changed("tags") {
				body["tags"] = parseTags(tags, args)
			}
			enc, err := encryptionBody(srcKey, keyID)
			if err != nil {
				return err
			}
			if enc != nil {
				body["properties"] = map[string]any{"encryption": enc}
			}
			if len(body) == 0 {
				return errors.New("nothing to set: give --encryption-key-source, --encryption-key-identifier or --tags")
			}
			out, _, err := c.arm(ctx, http.MethodPatch, path, apiBatch, nil, body)
			if err != nil {
				return err
			}
			return a.print(flattenBatchAccount(out), batchAccountTable)
		},
	}
	cmd.Flags().StringVarP(&name, "name", "n", "", "name of the batch account")
	cmd.Flags().StringVarP(&group, "resource-group", "g", "", "name of the resource group")
	encryptionFlags(cmd, &srcKey, &keyID)
	cmd.Flags().StringArrayVar(&tags, "tags", nil, `space-separated tags: key[=value] [key[=value] ...]; "" clears them`)
	return cmd
}

func (a *app) batchAccountDeleteCmd() *cobra.Command {
	var name, group string
	var yes, noWait bool
	cmd := &cobra.Command{
		Use:   "delete",
		Short: "Delete a batch account and all its data (works even while its key is inaccessible)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			c, err := a.client(ctx)
			if err != nil {
				return err
			}
			path, err := c.batchAccountPath(name, group)
			if err != nil {
				return err
			}
			if err := a.confirm(yes); err != nil {
				return err
			}
			out, resp, err := c.arm(ctx, http.MethodDelete, path, apiBatch, nil, nil)
			if err != nil || noWait {
				return err
			}
			_, err = c.waitOperation(ctx, out, resp)
			return err
		},
	}
	cmd.Flags().StringVarP(&name, "name", "n", "", "name of the batch account")
	cmd.Flags().StringVarP(&group, "resource-group", "g", "", "name of the resource group")
	cmd.Flags().BoolVarP(&yes, "yes", "y", false, "do not prompt for confirmation")
	cmd.Flags().BoolVar(&noWait, "no-wait", false, "do not wait for the long-running operation to finish")
	return cmd
}
