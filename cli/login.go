package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/spf13/cobra"

	"custody/server"
)

// ProfileFile is the signed-in profile `custody login` writes into the data
// directory (mode 0600); `custody logout` removes it.
const ProfileFile = "cli-profile.json"

// cloudName is what account show and login report as the cloud.
const cloudName = "Custody"

var guidRe = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

func isGUID(s string) bool { return guidRe.MatchString(s) }

// profile returns the stored profile, or ok false if there is none.
func (a *app) profile() (credentials, bool, error) {
	var p credentials
	path := filepath.Join(a.dataDir, ProfileFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return p, false, nil
	}
	if err != nil {
		return p, false, fmt.Errorf("read %s: %w", path, err)
	}
	if err := json.Unmarshal(b, &p); err != nil || p.ClientID == "" {
		return p, false, fmt.Errorf("%s is damaged; run `custody logout` and log in again", path)
	}
	return p, true, nil
}

// admin reads the bootstrap admin credentials the server writes.
func (a *app) admin() (credentials, error) {
	path := filepath.Join(a.dataDir, server.AdminFile)
	b, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			if _, err := loadEndpoint(a.dataDir); err != nil {
				return credentials{}, err
			}
		}
		return credentials{}, fmt.Errorf("not logged in, and the admin credentials in %s cannot be read (%v). Run `custody login --service-principal -u CLIENT_ID -p SECRET --tenant TENANT`.", path, errors.Unwrap(err))
	}
	var ac server.AdminCredentials
	if err := json.Unmarshal(b, &ac); err != nil || ac.ClientID == "" {
		return credentials{}, fmt.Errorf("%s is damaged; restart `custody server` to rewrite it", path)
	}
	return credentials{TenantID: ac.TenantID, ClientID: ac.ClientID, ClientSecret: ac.ClientSecret, SubscriptionID: ac.SubscriptionID}, nil
}

// credentials returns the profile's credentials, or the admin's when no one
// has logged in.
func (a *app) credentials() (credentials, error) {
	p, ok, err := a.profile()
	if err != nil || ok {
		return p, err
	}
	return a.admin()
}

// resolveSubscription turns --subscription (an id or a display name) into a
// subscription id.
func (c *client) resolveSubscription(ctx context.Context, s string) (string, error) {
	subs, err := c.armList(ctx, "/subscriptions", apiResources, nil)
	if err != nil {
		return "", err
	}
	for _, x := range subs {
		m, _ := x.(map[string]any)
		id, _ := m["subscriptionId"].(string)
		name, _ := m["displayName"].(string)
		if strings.EqualFold(id, s) || strings.EqualFold(name, s) {
			return id, nil
		}
	}
	return "", fmt.Errorf("subscription '%s' not found. Check the spelling and casing and try again; `custody account list` shows the subscriptions you can use.", s)
}

// accountBody is az's shape for a signed-in subscription.
func accountBody(cred credentials) map[string]any {
	name := cred.SubscriptionName
	if name == "" {
		name = cred.SubscriptionID
	}
	return map[string]any{
		"environmentName":  cloudName,
		"homeTenantId":     cred.TenantID,
		"id":               cred.SubscriptionID,
		"isDefault":        true,
		"managedByTenants": []any{},
		"name":             name,
		"state":            "Enabled",
		"tenantId":         cred.TenantID,
		"user":             map[string]any{"name": cred.ClientID, "type": "servicePrincipal"},
	}
}

func (a *app) loginCmd() *cobra.Command {
	var sp, allowNoSubs bool
	var user, password, tenant string
	cmd := &cobra.Command{
		Use:   "login",
		Short: "Log in with a service principal; later commands use it until `custody logout`",
		Long: `Log in with a service principal's client id and secret. The profile is
stored in the data directory as ` + ProfileFile + ` (mode 0600).

Without a login the CLI uses the server's bootstrap admin credentials
(admin.json in the data directory).`,
		Example: "  custody login --service-principal -u $APP_ID -p $PASSWORD --tenant $TENANT",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !sp {
				return errors.New("only service principal login is supported: custody login --service-principal -u CLIENT_ID -p SECRET --tenant TENANT")
			}
			if user == "" || password == "" {
				return errors.New("--username/-u and --password/-p are required with --service-principal")
			}
			if tenant == "" {
				adm, err := a.admin()
				if err != nil {
					return errors.New("--tenant is required with --service-principal")
				}
				tenant = adm.TenantID
			}
			cred := credentials{TenantID: tenant, ClientID: user, ClientSecret: password}
			c, err := newClient(a.dataDir, cred, a.debugLog())
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			if _, err := c.token(ctx, scopeManagement); err != nil {
				return err
			}
			subs, err := c.armList(ctx, "/subscriptions", apiResources, nil)
			if err != nil {
				return err
			}
			for _, x := range subs {
				m, _ := x.(map[string]any)
				id, _ := m["subscriptionId"].(string)
				name, _ := m["displayName"].(string)
				if a.subscription == "" || strings.EqualFold(a.subscription, id) || strings.EqualFold(a.subscription, name) {
					cred.SubscriptionID, cred.SubscriptionName = id, name
					break
				}
			}
			if cred.SubscriptionID == "" && !allowNoSubs {
				return fmt.Errorf("no subscriptions found for %s", user)
			}
			if err := writeProfile(filepath.Join(a.dataDir, ProfileFile), cred); err != nil {
				return err
			}
			out := []any{}
			if cred.SubscriptionID != "" {
				acct := accountBody(cred)
				delete(acct, "environmentName")
				acct["cloudName"] = cloudName
				out = append(out, acct)
			}
			return a.print(out, nil)
		},
	}
	f := cmd.Flags()
	f.BoolVar(&sp, "service-principal", false, "the credential is a service principal")
	f.StringVarP(&user, "username", "u", "", "the service principal's client (application) id")
	f.StringVarP(&password, "password", "p", "", "the service principal's secret")
	f.StringVarP(&tenant, "tenant", "t", "", "the tenant id (default: the server's tenant, if admin.json is readable)")
	f.BoolVar(&allowNoSubs, "allow-no-subscriptions", false, "log in even if the principal can see no subscription")
	return cmd
}

func writeProfile(path string, cred credentials) error {
	b, err := json.MarshalIndent(cred, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("save the login profile: %w", err)
	}
	if err := os.Chmod(tmp, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func (a *app) logoutCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "logout",
		Short: "Log out: forget the stored login; commands then use the admin credentials",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			err := os.Remove(filepath.Join(a.dataDir, ProfileFile))
			if errors.Is(err, fs.ErrNotExist) {
				return errors.New("there are no active accounts.")
			}
			return err
		},
	}
}

func (a *app) accountCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "account", Short: "Show the signed-in account and subscription"}
	cmd.AddCommand(&cobra.Command{
		Use:   "show",
		Short: "Show the current subscription, tenant and user",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cred, err := a.accountCredentials(cmd.Context())
			if err != nil {
				return err
			}
			return a.print(accountBody(cred), nil)
		},
	}, &cobra.Command{
		Use:   "list",
		Short: "List the subscriptions of the signed-in account",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cred, err := a.accountCredentials(cmd.Context())
			if err != nil {
				return err
			}
			return a.print([]any{accountBody(cred)}, nil)
		},
	})
	return cmd
}

// accountCredentials returns the signed-in credentials with the
// subscription's name filled in from the server when it is not stored.
func (a *app) accountCredentials(ctx context.Context) (credentials, error) {
	c, err := a.client(ctx)
	if err != nil {
		return credentials{}, err
	}
	cred := c.cred
	if cred.SubscriptionName == "" || a.subscription != "" {
		sub, _, err := c.arm(ctx, http.MethodGet, c.subscriptionPath(), apiResources, nil, nil)
		if err != nil {
			return credentials{}, err
		}
		m, _ := sub.(map[string]any)
		cred.SubscriptionName, _ = m["displayName"].(string)
	}
	return cred, nil
}
