package cli

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// vaultURL is https://{vault}.vault.{domain}:{port}, the vault's data plane.
func (c *client) vaultURL(vault string) string { return c.url(vault + ".vault") }

// vaultScope is the token scope of the key vault data plane (the resource
// the vault's 401 challenge names).
func (c *client) vaultScope() string { return c.url("vault") + "/.default" }

// data calls a vault's data plane at path (unescaped segments).
func (c *client) data(ctx context.Context, method, vault, path string, in any) (any, error) {
	out, _, err := c.call(ctx, method, c.vaultURL(vault)+escapePath(path)+"?api-version="+apiKeyVaultData, c.vaultScope(), in)
	return out, err
}

// dataList follows a data-plane list's nextLink pages and returns all
// values, each with az's "name" (the last name segment of its kid).
func (c *client) dataList(ctx context.Context, vault, path string) ([]any, error) {
	out, err := c.data(ctx, http.MethodGet, vault, path, nil)
	if err != nil {
		return nil, err
	}
	all := []any{}
	for {
		page, _ := out.(map[string]any)
		vals, _ := page["value"].([]any)
		all = append(all, vals...)
		next, _ := page["nextLink"].(string)
		if next == "" {
			break
		}
		if out, _, err = c.call(ctx, http.MethodGet, next, c.vaultScope(), nil); err != nil {
			return nil, err
		}
	}
	for _, v := range all {
		if m, ok := v.(map[string]any); ok {
			id := str(m["kid"])
			if id == "" {
				id = str(m["recoveryId"])
			}
			if _, name, _, err := parseKeyID(id); err == nil {
				m["name"] = name
			}
		}
	}
	return all, nil
}

// parseKeyID splits a key identifier https://{vault}.vault.{domain}/keys/
// {name}[/{version}] (or a deleted key's recovery id, /deletedkeys/{name}).
func parseKeyID(id string) (vault, name, version string, err error) {
	u, err := url.Parse(id)
	if err != nil || u.Host == "" {
		return "", "", "", fmt.Errorf("argument --id: '%s' is not a key identifier (https://{vault}.vault.{domain}/keys/{name}[/{version}])", id)
	}
	vault, _, _ = strings.Cut(u.Hostname(), ".")
	segs := strings.Split(strings.Trim(u.Path, "/"), "/")
	if len(segs) < 2 || len(segs) > 3 || (!strings.EqualFold(segs[0], "keys") && !strings.EqualFold(segs[0], "deletedkeys")) {
		return "", "", "", fmt.Errorf("argument --id: '%s' is not a key identifier (https://{vault}.vault.{domain}/keys/{name}[/{version}])", id)
	}
	if len(segs) == 3 {
		version = segs[2]
	}
	return vault, segs[1], version, nil
}

// keyRef is how a key command names its key: --id, or --vault-name, --name
// and (optionally) --version.
type keyRef struct {
	vault, name, version, id string
	withVersion              bool
}

func (k *keyRef) add(cmd *cobra.Command, withID, withVersion bool) {
	f := cmd.Flags()
	f.StringVar(&k.vault, "vault-name", "", "name of the key vault")
	f.StringVarP(&k.name, "name", "n", "", "name of the key")
	if withVersion {
		k.withVersion = true
		f.StringVarP(&k.version, "version", "v", "", "key version (default: the latest)")
	}
	if withID {
		f.StringVar(&k.id, "id", "", "key identifier (kid), instead of --vault-name, --name and --version")
	}
}

func (k *keyRef) resolve() error {
	if k.id != "" {
		if k.vault != "" || k.name != "" {
			return errors.New("usage error: --id OR --vault-name and --name")
		}
		v, n, ver, err := parseKeyID(k.id)
		if err != nil {
			return err
		}
		k.vault, k.name = v, n
		if k.version == "" {
			k.version = ver
		}
		return nil
	}
	if err := requireFlag("--vault-name", k.vault); err != nil {
		return err
	}
	return requireFlag("--name/-n", k.name)
}

// path is /keys/{name} or /keys/{name}/{version}.
func (k *keyRef) path() string {
	if k.version != "" {
		return "/keys/" + k.name + "/" + k.version
	}
	return "/keys/" + k.name
}

// versionPath is the path of one version: /keys/{name}/{version}, or
// /keys/{name}/ (trailing slash) for the latest, as azkeys sends it.
func (k *keyRef) versionPath() string {
	if k.version == "" {
		return k.path() + "/"
	}
	return k.path()
}

// parseISOTime reads an ISO 8601 date or time as Unix seconds.
func parseISOTime(flag, s string) (int64, error) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02T15:04", "2006-01-02 15:04:05", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.Unix(), nil
		}
	}
	return 0, fmt.Errorf("argument %s: '%s' is not an ISO 8601 date or time (for example 2030-12-31T00:00:00Z)", flag, s)
}

// azTimeLayout is how az prints the key vault's datetimes: ISO 8601 in UTC
// with an explicit offset, as Python's datetime.isoformat writes them
// (2026-11-27T14:12:15+00:00).
const azTimeLayout = "2006-01-02T15:04:05-07:00"

// azTime formats the REST API's integer Unix seconds as az prints them;
// anything else (null, an already formatted value) is kept.
func azTime(v any) any {
	if n, ok := v.(float64); ok {
		return time.Unix(int64(n), 0).UTC().Format(azTimeLayout)
	}
	return v
}

// azKeyTimes rewrites a key answer's names and timestamps the way az prints
// them (key.key_ops as key.keyOps). It rewrites the timestamps of a key answer (a key, a deleted key,
// a list of either, a rotation policy) the way az prints them: the
// attributes' created and updated, exp as expires and nbf as notBefore
// (null when unset, as az shows them), and a deleted key's deletedDate and
// scheduledPurgeDate as ISO 8601 strings. The REST API keeps integer Unix
// seconds; only the printed output changes.
func azKeyTimes(v any) any {
	switch x := v.(type) {
	case []any:
		for i := range x {
			x[i] = azKeyTimes(x[i])
		}
	case map[string]any:
		isKey := x["kid"] != nil || x["key"] != nil
		// az prints the JSON web key's key_ops as keyOps.
		if jwk, ok := x["key"].(map[string]any); ok {
			if ops, ok := jwk["key_ops"]; ok {
				jwk["keyOps"] = ops
				delete(jwk, "key_ops")
			}
		}
		for _, k := range []string{"deletedDate", "scheduledPurgeDate"} {
			if t, ok := x[k]; ok {
				x[k] = azTime(t)
			}
		}
		at, ok := x["attributes"].(map[string]any)
		if !ok {
			break
		}
		for _, k := range []string{"created", "updated"} {
			if t, ok := at[k]; ok {
				at[k] = azTime(t)
			}
		}
		for rest, az := range map[string]string{"exp": "expires", "nbf": "notBefore"} {
			if t, ok := at[rest]; ok {
				at[az] = azTime(t)
				delete(at, rest)
			} else if _, ok := at[az]; !ok && isKey {
				at[az] = nil
			}
		}
	}
	return v
}

// keyAttrs are the attribute flags of create, import and set-attributes.
type keyAttrs struct {
	disabled, enabled bool
	expires, before   string
	ops, tags         []string
}

// attributes returns the request's attributes object, with enabled set
// only when the command names it.
func (k *keyAttrs) attributes(cmd *cobra.Command) (map[string]any, error) {
	f := cmd.Flags()
	attrs := map[string]any{}
	if f.Lookup("disabled") != nil && f.Changed("disabled") {
		attrs["enabled"] = !k.disabled
	}
	if f.Lookup("enabled") != nil && f.Changed("enabled") {
		attrs["enabled"] = k.enabled
	}
	if k.expires != "" {
		t, err := parseISOTime("--expires", k.expires)
		if err != nil {
			return nil, err
		}
		attrs["exp"] = t
	}
	if k.before != "" {
		t, err := parseISOTime("--not-before", k.before)
		if err != nil {
			return nil, err
		}
		attrs["nbf"] = t
	}
	return attrs, nil
}

func (k *keyAttrs) add(cmd *cobra.Command, enabledFlag bool) {
	f := cmd.Flags()
	if enabledFlag {
		f.BoolVar(&k.enabled, "enabled", true, "enable or disable the key [true|false]")
	} else {
		f.BoolVar(&k.disabled, "disabled", false, "create the key disabled [true|false]")
	}
	f.StringVar(&k.expires, "expires", "", "expiry date and time (ISO 8601, e.g. 2030-12-31T00:00:00Z)")
	f.StringVar(&k.before, "not-before", "", "date and time before which the key cannot be used (ISO 8601)")
	f.StringArrayVar(&k.ops, "ops", nil, "space-separated permitted operations: encrypt decrypt sign verify wrapKey unwrapKey")
	f.StringArrayVar(&k.tags, "tags", nil, "space-separated tags: key[=value] [key[=value] ...]")
}

// keyArgs are the multi-value and bool flags of key commands.
var (
	keyMulti = []string{"ops", "tags"}
	keyBools = []string{"disabled", "enabled", "exportable"}
)

func (a *app) keyCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "key", Short: "Manage keys in a key vault (the vault's data plane)"}
	rp := &cobra.Command{Use: "rotation-policy", Short: "Manage a key's rotation policy"}
	rp.AddCommand(a.keyRotationPolicyShowCmd(), a.keyRotationPolicyUpdateCmd())
	cmd.AddCommand(a.keyCreateCmd(), a.keyImportCmd(), a.keyShowCmd(), a.keyListCmd(), a.keyListVersionsCmd(),
		a.keySetAttributesCmd(), a.keyDeleteCmd(), a.keyRecoverCmd(), a.keyPurgeCmd(), a.keyListDeletedCmd(),
		a.keyBackupCmd(), a.keyRestoreCmd(), a.keyRotateCmd(), a.keyCryptoCmd("encrypt"), a.keyCryptoCmd("decrypt"), rp)
	return cmd
}

// withKty applies --protection: hsm turns RSA into RSA-HSM and EC into
// EC-HSM.
func withKty(kty, protection string) (string, error) {
	kty = strings.ToUpper(kty)
	switch strings.ToLower(protection) {
	case "", "software":
		return kty, nil
	case "hsm":
		if !strings.HasSuffix(kty, "-HSM") {
			kty += "-HSM"
		}
		return kty, nil
	}
	return "", fmt.Errorf("argument --protection/-p: invalid choice: '%s' (choose from 'software', 'hsm')", protection)
}

func (a *app) keyCreateCmd() *cobra.Command {
	var ref keyRef
	var attrs keyAttrs
	var kty, curve, protection string
	var size int
	cmd := &cobra.Command{
		Use:   "create",
		Short: "Create a key, or a new version of an existing key",
		Example: "  custody keyvault key create --vault-name vault1 -n key1 --kty RSA --size 2048 --ops wrapKey unwrapKey\n" +
			"  custody keyvault key show --vault-name vault1 -n key1 --query key.kid -o tsv",
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := ref.resolve(); err != nil {
				return err
			}
			kt, err := withKty(kty, protection)
			if err != nil {
				return err
			}
			body := map[string]any{"kty": kt}
			if cmd.Flags().Changed("size") {
				body["key_size"] = size
			}
			if curve != "" {
				body["crv"] = curve
			}
			if len(attrs.ops) > 0 {
				body["key_ops"] = attrs.ops
			}
			at, err := attrs.attributes(cmd)
			if err != nil {
				return err
			}
			if len(at) > 0 {
				body["attributes"] = at
			}
			if cmd.Flags().Changed("tags") {
				body["tags"] = parseTags(attrs.tags, nil)
			}
			c, err := a.client(cmd.Context())
			if err != nil {
				return err
			}
			out, err := c.data(cmd.Context(), http.MethodPost, ref.vault, "/keys/"+ref.name+"/create", body)
			if err != nil {
				return err
			}
			return a.print(azKeyTimes(out), nil)
		},
	}
	ref.add(cmd, false, false)
	attrs.add(cmd, false)
	f := cmd.Flags()
	f.StringVar(&kty, "kty", "RSA", "key type: RSA, RSA-HSM, EC, EC-HSM")
	f.IntVar(&size, "size", 0, "RSA key size in bits: 2048, 3072 or 4096 (default 2048)")
	f.StringVar(&curve, "curve", "", "elliptic curve of an EC key: P-256, P-384, P-521")
	f.StringVarP(&protection, "protection", "p", "", "software or hsm")
	a.azArgs(cmd, keyMulti, keyBools)
	return cmd
}

func b64url(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// jwkFromPEM reads a PEM private key (PKCS#8, PKCS#1 or SEC 1) as a JSON Web
// Key with its private parts.
func jwkFromPEM(data []byte, ops []string) (map[string]any, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("the file holds no PEM block; give a PEM private key (-----BEGIN PRIVATE KEY-----)")
	}
	if strings.Contains(block.Type, "ENCRYPTED") || block.Headers["Proc-Type"] != "" {
		return nil, errors.New("the PEM private key is encrypted; decrypt it first (openssl pkey -in key.pem -out plain.pem) and import the plain key")
	}
	var key any
	var err error
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("the PEM block is a %s, not a private key", block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("the PEM private key cannot be read: %v", err)
	}
	jwk := map[string]any{}
	if len(ops) > 0 {
		jwk["key_ops"] = ops
	}
	switch k := key.(type) {
	case *rsa.PrivateKey:
		if len(k.Primes) != 2 {
			return nil, errors.New("RSA keys with more than two primes are not supported")
		}
		k.Precompute()
		jwk["kty"] = "RSA"
		jwk["n"], jwk["e"] = b64url(k.N.Bytes()), b64url(big.NewInt(int64(k.E)).Bytes())
		jwk["d"], jwk["p"], jwk["q"] = b64url(k.D.Bytes()), b64url(k.Primes[0].Bytes()), b64url(k.Primes[1].Bytes())
		jwk["dp"], jwk["dq"], jwk["qi"] = b64url(k.Precomputed.Dp.Bytes()), b64url(k.Precomputed.Dq.Bytes()), b64url(k.Precomputed.Qinv.Bytes())
	case *ecdsa.PrivateKey:
		crv := map[elliptic.Curve]string{elliptic.P256(): "P-256", elliptic.P384(): "P-384", elliptic.P521(): "P-521"}[k.Curve]
		if crv == "" {
			return nil, errors.New("the EC key's curve is not P-256, P-384 or P-521")
		}
		size := (k.Curve.Params().BitSize + 7) / 8
		pad := func(n *big.Int) string { return b64url(n.FillBytes(make([]byte, size))) }
		jwk["kty"], jwk["crv"] = "EC", crv
		jwk["x"], jwk["y"], jwk["d"] = pad(k.X), pad(k.Y), pad(k.D)
	default:
		return nil, fmt.Errorf("%T keys cannot be imported; use an RSA or EC key", key)
	}
	return jwk, nil
}

func (a *app) keyImportCmd() *cobra.Command {
	var ref keyRef
	var attrs keyAttrs
	var pemFile, byokFile, protection, kty string
	cmd := &cobra.Command{
		Use:     "import",
		Short:   "Import a private key from a PEM file as a new key or a new version",
		Example: "  custody keyvault key import --vault-name vault1 -n key1 --pem-file key.pem --ops wrapKey unwrapKey",
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := ref.resolve(); err != nil {
				return err
			}
			if (pemFile == "") == (byokFile == "") {
				return errors.New("usage error: specify exactly one of --pem-file, --byok-file")
			}
			file := pemFile
			if file == "" {
				file = byokFile
			}
			data, err := os.ReadFile(file)
			if err != nil {
				return fmt.Errorf("read the key file: %v", err)
			}
			jwk, err := jwkFromPEM(data, attrs.ops)
			if err != nil {
				return fmt.Errorf("%s: %v", file, err)
			}
			if kty != "" && !strings.EqualFold(strings.TrimSuffix(strings.ToUpper(kty), "-HSM"), str(jwk["kty"])) {
				return fmt.Errorf("argument --kty: the file holds an %s key, not %s", jwk["kty"], kty)
			}
			body := map[string]any{"key": jwk}
			hsmKty, err := withKty(str(jwk["kty"]), protection)
			if err != nil {
				return err
			}
			if strings.HasSuffix(strings.ToUpper(kty), "-HSM") || strings.HasSuffix(hsmKty, "-HSM") {
				body["Hsm"] = true
			}
			at, err := attrs.attributes(cmd)
			if err != nil {
				return err
			}
			if len(at) > 0 {
				body["attributes"] = at
			}
			if cmd.Flags().Changed("tags") {
				body["tags"] = parseTags(attrs.tags, nil)
			}
			c, err := a.client(cmd.Context())
			if err != nil {
				return err
			}
			out, err := c.data(cmd.Context(), http.MethodPut, ref.vault, "/keys/"+ref.name, body)
			if err != nil {
				return err
			}
			return a.print(azKeyTimes(out), nil)
		},
	}
	ref.add(cmd, false, false)
	attrs.add(cmd, false)
	f := cmd.Flags()
	f.StringVar(&pemFile, "pem-file", "", "PEM file holding the private key (PKCS#8, PKCS#1 or SEC 1, not encrypted)")
	f.StringVar(&byokFile, "byok-file", "", "key file to import; this server reads it as a PEM private key")
	f.StringVar(&kty, "kty", "", "expected key type: RSA, RSA-HSM, EC, EC-HSM (default: the file's)")
	f.StringVarP(&protection, "protection", "p", "", "software or hsm")
	a.azArgs(cmd, keyMulti, keyBools)
	return cmd
}

func (a *app) keyShowCmd() *cobra.Command {
	var ref keyRef
	cmd := &cobra.Command{
		Use:     "show",
		Short:   "Show a key (the latest version unless --version is given)",
		Example: "  custody keyvault key show --vault-name vault1 -n key1 --query key.kid -o tsv",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := ref.resolve(); err != nil {
				return err
			}
			c, err := a.client(cmd.Context())
			if err != nil {
				return err
			}
			out, err := c.data(cmd.Context(), http.MethodGet, ref.vault, ref.versionPath(), nil)
			if err != nil {
				return err
			}
			return a.print(azKeyTimes(out), nil)
		},
	}
	ref.add(cmd, true, true)
	return cmd
}

// keyListTable is az's table for key lists.
func keyListTable(v any) any {
	rows := []row{}
	list, _ := v.([]any)
	for _, x := range list {
		m, _ := x.(map[string]any)
		at, _ := m["attributes"].(map[string]any)
		rows = append(rows, newRow("Name", m["name"], "Kid", m["kid"], "Enabled", at["enabled"]))
	}
	return rows
}

func (a *app) keyListCmd() *cobra.Command {
	return a.vaultListCmd("list", "List the keys of a vault", "/keys", keyListTable)
}

// vaultListCmd builds a command that lists every page of path on a vault's
// data plane.
func (a *app) vaultListCmd(use, short, path string, table func(any) any) *cobra.Command {
	var vault string
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireFlag("--vault-name", vault); err != nil {
				return err
			}
			c, err := a.client(cmd.Context())
			if err != nil {
				return err
			}
			all, err := c.dataList(cmd.Context(), vault, path)
			if err != nil {
				return err
			}
			return a.print(azKeyTimes(all), table)
		},
	}
	cmd.Flags().StringVar(&vault, "vault-name", "", "name of the key vault")
	return cmd
}

func (a *app) keyListVersionsCmd() *cobra.Command {
	var ref keyRef
	cmd := &cobra.Command{
		Use:   "list-versions",
		Short: "List the versions of a key",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := ref.resolve(); err != nil {
				return err
			}
			c, err := a.client(cmd.Context())
			if err != nil {
				return err
			}
			all, err := c.dataList(cmd.Context(), ref.vault, "/keys/"+ref.name+"/versions")
			if err != nil {
				return err
			}
			return a.print(azKeyTimes(all), keyListTable)
		},
	}
	ref.add(cmd, true, false)
	return cmd
}

func (a *app) keySetAttributesCmd() *cobra.Command {
	var ref keyRef
	var attrs keyAttrs
	cmd := &cobra.Command{
		Use:     "set-attributes",
		Short:   "Change a key version's attributes: enabled, expiry, not-before, operations, tags",
		Example: "  custody keyvault key set-attributes --vault-name vault1 -n key1 --enabled false",
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := ref.resolve(); err != nil {
				return err
			}
			body := map[string]any{}
			at, err := attrs.attributes(cmd)
			if err != nil {
				return err
			}
			if len(at) > 0 {
				body["attributes"] = at
			}
			if cmd.Flags().Changed("ops") {
				body["key_ops"] = attrs.ops
			}
			if cmd.Flags().Changed("tags") {
				body["tags"] = parseTags(attrs.tags, nil)
			}
			c, err := a.client(cmd.Context())
			if err != nil {
				return err
			}
			out, err := c.data(cmd.Context(), http.MethodPatch, ref.vault, ref.versionPath(), body)
			if err != nil {
				return err
			}
			return a.print(azKeyTimes(out), nil)
		},
	}
	ref.add(cmd, true, true)
	attrs.add(cmd, true)
	a.azArgs(cmd, keyMulti, keyBools)
	return cmd
}

// keySimpleCmd is a key command that sends one request for a named key.
func (a *app) keySimpleCmd(use, short, method string, path func(name string) string, quiet bool) *cobra.Command {
	var ref keyRef
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := ref.resolve(); err != nil {
				return err
			}
			c, err := a.client(cmd.Context())
			if err != nil {
				return err
			}
			out, err := c.data(cmd.Context(), method, ref.vault, path(ref.name), nil)
			if err != nil || quiet {
				return err
			}
			return a.print(azKeyTimes(out), nil)
		},
	}
	ref.add(cmd, use != "purge" && use != "recover", false)
	return cmd
}

func (a *app) keyDeleteCmd() *cobra.Command {
	return a.keySimpleCmd("delete", "Delete a key with all its versions (soft delete: recoverable until the retention period ends)",
		http.MethodDelete, func(n string) string { return "/keys/" + n }, false)
}

func (a *app) keyRecoverCmd() *cobra.Command {
	return a.keySimpleCmd("recover", "Recover a deleted key with all its versions",
		http.MethodPost, func(n string) string { return "/deletedkeys/" + n + "/recover" }, false)
}

func (a *app) keyPurgeCmd() *cobra.Command {
	return a.keySimpleCmd("purge", "Permanently delete a deleted key (refused under purge protection)",
		http.MethodDelete, func(n string) string { return "/deletedkeys/" + n }, true)
}

func (a *app) keyRotateCmd() *cobra.Command {
	return a.keySimpleCmd("rotate", "Create a new version of a key now, with the latest version's type and size",
		http.MethodPost, func(n string) string { return "/keys/" + n + "/rotate" }, false)
}

func (a *app) keyListDeletedCmd() *cobra.Command {
	return a.vaultListCmd("list-deleted", "List the deleted keys of a vault", "/deletedkeys", nil)
}

func (a *app) keyBackupCmd() *cobra.Command {
	var ref keyRef
	var file string
	cmd := &cobra.Command{
		Use:   "backup",
		Short: "Back up a key with all its versions to a file (only a vault of this server can restore it)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := ref.resolve(); err != nil {
				return err
			}
			if err := requireFlag("--file/-f", file); err != nil {
				return err
			}
			c, err := a.client(cmd.Context())
			if err != nil {
				return err
			}
			out, err := c.data(cmd.Context(), http.MethodPost, ref.vault, "/keys/"+ref.name+"/backup", nil)
			if err != nil {
				return err
			}
			m, _ := out.(map[string]any)
			blob, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(str(m["value"]), "="))
			if err != nil {
				return fmt.Errorf("the vault answered with a backup that is not base64url: %v", err)
			}
			return os.WriteFile(file, blob, 0o600)
		},
	}
	ref.add(cmd, true, false)
	cmd.Flags().StringVarP(&file, "file", "f", "", "file to write the backup to")
	return cmd
}

func (a *app) keyRestoreCmd() *cobra.Command {
	var vault, file string
	cmd := &cobra.Command{
		Use:   "restore",
		Short: "Restore a key from a backup file",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := requireFlag("--vault-name", vault); err != nil {
				return err
			}
			if err := requireFlag("--file/-f", file); err != nil {
				return err
			}
			blob, err := os.ReadFile(file)
			if err != nil {
				return fmt.Errorf("read the backup file: %v", err)
			}
			c, err := a.client(cmd.Context())
			if err != nil {
				return err
			}
			out, err := c.data(cmd.Context(), http.MethodPost, vault, "/keys/restore", map[string]any{"value": b64url(blob)})
			if err != nil {
				return err
			}
			return a.print(azKeyTimes(out), nil)
		},
	}
	cmd.Flags().StringVar(&vault, "vault-name", "", "name of the key vault")
	cmd.Flags().StringVarP(&file, "file", "f", "", "backup file written by `custody keyvault key backup`")
	return cmd
}

// decodeB64 accepts standard or URL-safe base64, padded or not.
func decodeB64(s string) ([]byte, error) {
	s = strings.TrimRight(strings.TrimSpace(s), "=")
	s = strings.NewReplacer("+", "-", "/", "_").Replace(s)
	return base64.RawURLEncoding.DecodeString(s)
}

func (a *app) keyCryptoCmd(op string) *cobra.Command {
	var ref keyRef
	var alg, value, dataType string
	short := "Encrypt a small value with a key (RSA: RSA-OAEP, RSA-OAEP-256, RSA1_5)"
	if op == "decrypt" {
		short = "Decrypt a value encrypted with a key"
	}
	cmd := &cobra.Command{
		Use:   op,
		Short: short,
		Example: "  custody keyvault key encrypt --vault-name vault1 -n key1 --algorithm RSA-OAEP-256 --value hello --data-type plaintext\n" +
			"  custody keyvault key decrypt --vault-name vault1 -n key1 --algorithm RSA-OAEP-256 --value $CIPHERTEXT --data-type plaintext",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := ref.resolve(); err != nil {
				return err
			}
			if err := requireFlag("--algorithm/-a", alg); err != nil {
				return err
			}
			if err := requireFlag("--value", value); err != nil {
				return err
			}
			var in []byte
			switch strings.ToLower(dataType) {
			case "plaintext":
				in = []byte(value)
				if op == "decrypt" {
					var err error
					if in, err = decodeB64(value); err != nil {
						return fmt.Errorf("argument --value: the ciphertext is not base64: %v", err)
					}
				}
			case "base64":
				var err error
				if in, err = decodeB64(value); err != nil {
					return fmt.Errorf("argument --value: not base64 (use --data-type plaintext for text): %v", err)
				}
			default:
				return fmt.Errorf("argument --data-type: invalid choice: '%s' (choose from 'base64', 'plaintext')", dataType)
			}
			c, err := a.client(cmd.Context())
			if err != nil {
				return err
			}
			out, err := c.data(cmd.Context(), http.MethodPost, ref.vault, ref.path()+"/"+op, map[string]any{"alg": alg, "value": b64url(in)})
			if err != nil {
				return err
			}
			m, _ := out.(map[string]any)
			res, err := decodeB64(str(m["value"]))
			if err != nil {
				return fmt.Errorf("the vault answered with a value that is not base64url: %v", err)
			}
			result := base64.StdEncoding.EncodeToString(res)
			if op == "decrypt" && strings.EqualFold(dataType, "plaintext") {
				result = string(res)
			}
			return a.print(map[string]any{"algorithm": alg, "kid": m["kid"], "result": result}, nil)
		},
	}
	ref.add(cmd, true, true)
	f := cmd.Flags()
	f.StringVarP(&alg, "algorithm", "a", "", "RSA-OAEP, RSA-OAEP-256 or RSA1_5")
	f.StringVar(&value, "value", "", "the data: text or base64 for encrypt (see --data-type), base64 ciphertext for decrypt")
	f.StringVar(&dataType, "data-type", "base64", "base64 or plaintext: how --value (encrypt) or the result (decrypt) is written")
	return cmd
}

// readJSONValue reads --value: inline JSON or @file.
func readJSONValue(v string) (any, error) {
	data := []byte(v)
	if name, ok := strings.CutPrefix(v, "@"); ok {
		b, err := os.ReadFile(name)
		if err != nil {
			return nil, fmt.Errorf("argument --value: %v", err)
		}
		data = b
	}
	var out any
	if err := json.Unmarshal(data, &out); err != nil {
		return nil, fmt.Errorf("argument --value: not valid JSON: %v", err)
	}
	return out, nil
}

func (a *app) keyRotationPolicyShowCmd() *cobra.Command {
	return a.keySimpleCmd("show", "Show a key's rotation policy",
		http.MethodGet, func(n string) string { return "/keys/" + n + "/rotationpolicy" }, false)
}

func (a *app) keyRotationPolicyUpdateCmd() *cobra.Command {
	var ref keyRef
	var value string
	cmd := &cobra.Command{
		Use:   "update",
		Short: "Set a key's rotation policy from JSON (lifetimeActions, attributes.expiryTime)",
		Example: `  custody keyvault key rotation-policy update --vault-name vault1 -n key1 --value @policy.json
  policy.json: {"lifetimeActions":[{"trigger":{"timeAfterCreate":"P90D"},"action":{"type":"Rotate"}}],"attributes":{"expiryTime":"P1Y"}}`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := ref.resolve(); err != nil {
				return err
			}
			if err := requireFlag("--value", value); err != nil {
				return err
			}
			body, err := readJSONValue(value)
			if err != nil {
				return err
			}
			c, err := a.client(cmd.Context())
			if err != nil {
				return err
			}
			out, err := c.data(cmd.Context(), http.MethodPut, ref.vault, "/keys/"+ref.name+"/rotationpolicy", body)
			if err != nil {
				return err
			}
			return a.print(azKeyTimes(out), nil)
		},
	}
	ref.add(cmd, false, false)
	cmd.Flags().StringVar(&value, "value", "", "the policy as JSON, or @file.json")
	return cmd
}
