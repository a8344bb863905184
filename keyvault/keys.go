package keyvault

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"custody"
)

// This file is the keys data plane: every operation of the Key Vault REST API
// for keys, as azkeys calls it. Each exported method checks, in this order:
// the vault exists and is live (404 VaultNotFound); the caller may do the
// operation on the key name it asked for (403 ForbiddenByPolicy or
// ForbiddenByRbac); the key or version exists and is not soft-deleted (404
// KeyNotFound), or, when creating, importing or restoring, the name is not
// held by a soft-deleted key (409 ObjectIsDeletedButRecoverable); the version
// is enabled, inside its nbf/exp window and permits the operation (403); and
// only then it reads the request body (400). The permission comes before any
// look-up of the name, so a caller without it gets the same 403 whether the
// key exists, is soft-deleted or was never there. Every call, successful or not, is appended to the audit
// log before it is answered (records are stored in batches, a group commit:
// see auditQueue), so no answered call loses its record in a crash; a
// crypto operation whose record cannot be stored answers 500 without its
// result.
//
// Key types: "RSA-HSM" and "EC-HSM" keys live in the server's hardware
// security module (Service.HSM, the PKCS#11 token of its root key): they
// are generated or imported there, every private-key operation runs there,
// and the key version seals only a reference to the token object. They
// need a premium vault, as in Azure, and a server with an HSM; otherwise
// creating one is refused. They cannot be backed up (their private parts
// never leave the token). "RSA" and "EC" keys are software keys, sealed
// under the root key.

// Decoder fills v from a request body. The data plane passes
// httpapi.DecodeJSON bound to the request; Go callers can pass JSONBody.
type Decoder func(v any) error

// JSONBody returns a Decoder reading from b.
func JSONBody(b []byte) Decoder {
	return func(v any) error {
		if err := json.Unmarshal(b, v); err != nil {
			return custody.Errorf(custody.KindInvalid, "BadParameter", "The request body is not valid JSON: %v.", err)
		}
		return nil
	}
}

// KeyAttributes are the attributes of a key version on the wire. Times are
// integer Unix seconds.
type KeyAttributes struct {
	Enabled         *bool  `json:"enabled,omitempty"`
	NotBefore       *int64 `json:"nbf,omitempty"`
	Expires         *int64 `json:"exp,omitempty"`
	Created         *int64 `json:"created,omitempty"`
	Updated         *int64 `json:"updated,omitempty"`
	RecoveryLevel   string `json:"recoveryLevel,omitempty"`
	RecoverableDays *int   `json:"recoverableDays,omitempty"`
	Exportable      *bool  `json:"exportable,omitempty"`
}

// KeyBundle is a key version with its attributes: the answer of create,
// import, get, update, rotate, recover and restore.
type KeyBundle struct {
	Key        JSONWebKey        `json:"key"`
	Attributes KeyAttributes     `json:"attributes"`
	Tags       map[string]string `json:"tags,omitempty"`
	Managed    bool              `json:"managed,omitempty"`
}

// DeletedKeyBundle is a soft-deleted key's latest version.
type DeletedKeyBundle struct {
	KeyBundle
	RecoveryID         string `json:"recoveryId,omitempty"`
	DeletedDate        *int64 `json:"deletedDate,omitempty"`
	ScheduledPurgeDate *int64 `json:"scheduledPurgeDate,omitempty"`
}

// KeyItem is one entry of a key list.
type KeyItem struct {
	Kid        string            `json:"kid"`
	Attributes KeyAttributes     `json:"attributes"`
	Tags       map[string]string `json:"tags,omitempty"`
	Managed    bool              `json:"managed,omitempty"`
}

// DeletedKeyItem is one entry of a deleted-key list.
type DeletedKeyItem struct {
	KeyItem
	RecoveryID         string `json:"recoveryId,omitempty"`
	DeletedDate        *int64 `json:"deletedDate,omitempty"`
	ScheduledPurgeDate *int64 `json:"scheduledPurgeDate,omitempty"`
}

// KeyList is a page of a key list.
type KeyList struct {
	Value    []KeyItem `json:"value"`
	NextLink *string   `json:"nextLink"`
}

// DeletedKeyList is a page of a deleted-key list.
type DeletedKeyList struct {
	Value    []DeletedKeyItem `json:"value"`
	NextLink *string          `json:"nextLink"`
}

// CreateKeyParameters is the body of a create request.
type CreateKeyParameters struct {
	Kty            string            `json:"kty"`
	KeySize        *int              `json:"key_size,omitempty"`
	PublicExponent *int              `json:"public_exponent,omitempty"`
	Crv            string            `json:"crv,omitempty"`
	KeyOps         []string          `json:"key_ops,omitempty"`
	Attributes     *KeyAttributes    `json:"attributes,omitempty"`
	Tags           map[string]string `json:"tags,omitempty"`
	ReleasePolicy  json.RawMessage   `json:"release_policy,omitempty"`
}

// ImportKeyParameters is the body of an import request. Key Vault spells
// the HSM flag with a capital H.
type ImportKeyParameters struct {
	Key           *JSONWebKey       `json:"key"`
	HSM           *bool             `json:"Hsm,omitempty"`
	Attributes    *KeyAttributes    `json:"attributes,omitempty"`
	Tags          map[string]string `json:"tags,omitempty"`
	ReleasePolicy json.RawMessage   `json:"release_policy,omitempty"`
}

// UpdateKeyParameters is the body of an update request; absent fields stay.
type UpdateKeyParameters struct {
	KeyOps        []string          `json:"key_ops,omitempty"`
	Attributes    *KeyAttributes    `json:"attributes,omitempty"`
	Tags          map[string]string `json:"tags,omitempty"`
	ReleasePolicy json.RawMessage   `json:"release_policy,omitempty"`
}

// KeyOperationParameters is the body of encrypt, decrypt, wrapkey and
// unwrapkey (value is the input) and sign (value is the digest).
type KeyOperationParameters struct {
	Alg   string `json:"alg"`
	Value Bytes  `json:"value"`
	IV    Bytes  `json:"iv,omitempty"`
	AAD   Bytes  `json:"aad,omitempty"`
	Tag   Bytes  `json:"tag,omitempty"`
}

// VerifyParameters is the body of verify.
type VerifyParameters struct {
	Alg    string `json:"alg"`
	Digest Bytes  `json:"digest"`
	Value  Bytes  `json:"value"`
}

// KeyOperationResult is the answer of encrypt, decrypt, wrapkey, unwrapkey
// and sign.
type KeyOperationResult struct {
	Kid   string `json:"kid"`
	Value Bytes  `json:"value"`
}

// VerifyResult is the answer of verify.
type VerifyResult struct {
	Value bool `json:"value"`
}

// BackupResult carries a backup blob.
type BackupResult struct {
	Value Bytes `json:"value"`
}

// RestoreParameters is the body of restore.
type RestoreParameters struct {
	Value Bytes `json:"value"`
}

// operation describes one data-plane operation: the access policy
// permission and the RBAC data action it needs, and its audit name.
type operation struct {
	audit  string
	perm   string
	action string
}

const actionPrefix = "Microsoft.KeyVault/vaults/"

var (
	opCreate      = operation{"KeyCreate", "create", "keys/create/action"}
	opImport      = operation{"KeyImport", "import", "keys/import/action"}
	opGet         = operation{"KeyGet", "get", "keys/read"}
	opChanges     = operation{"KeyChanges", "get", "keys/read"}
	opList        = operation{"KeyList", "list", "keys/read"}
	opListVer     = operation{"KeyListVersions", "list", "keys/read"}
	opUpdate      = operation{"KeyUpdate", "update", "keys/update/action"}
	opDelete      = operation{"KeyDelete", "delete", "keys/delete"}
	opGetDeleted  = operation{"KeyGetDeleted", "get", "keys/read"}
	opListDeleted = operation{"KeyListDeleted", "list", "keys/read"}
	opRecover     = operation{"KeyRecover", "recover", "keys/recover/action"}
	opPurge       = operation{"KeyPurge", "purge", "keys/purge/action"}
	opBackup      = operation{"KeyBackup", "backup", "keys/backup/action"}
	opRestore     = operation{"KeyRestore", "restore", "keys/restore/action"}
	opRotate      = operation{"KeyRotate", "rotate", "keys/rotate/action"}
	opGetPolicy   = operation{"KeyRotationPolicyGet", "getrotationpolicy", "keyrotationpolicies/read"}
	opSetPolicy   = operation{"KeyRotationPolicySet", "setrotationpolicy", "keyrotationpolicies/write"}
	opEncrypt     = operation{"KeyEncrypt", "encrypt", "keys/encrypt/action"}
	opDecrypt     = operation{"KeyDecrypt", "decrypt", "keys/decrypt/action"}
	opWrap        = operation{"KeyWrap", "wrapKey", "keys/wrap/action"}
	opUnwrap      = operation{"KeyUnwrap", "unwrapKey", "keys/unwrap/action"}
	opSign        = operation{"KeySign", "sign", "keys/sign/action"}
	opVerify      = operation{"KeyVerify", "verify", "keys/verify/action"}
	// opSystemRotate is rotation by the background sweep.
	opSystemRotate = operation{audit: "KeyRotateByPolicy"}
)

// CryptoOps maps the lower-case path segment of a crypto operation to the
// operation's name in key_ops.
var CryptoOps = map[string]string{
	"encrypt": OpEncrypt, "decrypt": OpDecrypt, "wrapkey": OpWrapKey, "unwrapkey": OpUnwrapKey, "sign": OpSign, "verify": OpVerify,
}

var cryptoOperation = map[string]operation{
	OpEncrypt: opEncrypt, OpDecrypt: opDecrypt, OpWrapKey: opWrap, OpUnwrapKey: opUnwrap, OpSign: opSign, OpVerify: opVerify,
}

var keyNameRE = regexp.MustCompile(`^[0-9a-zA-Z-]{1,127}$`)

// ValidKeyName reports whether name is a valid key name: 1 to 127 letters,
// digits and hyphens.
func ValidKeyName(name string) bool { return keyNameRE.MatchString(name) }

func newVersion() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("keyvault: no randomness: " + err.Error())
	}
	return hex.EncodeToString(b[:])
}

// sealAAD binds sealed key material to its vault, key and version.
// KeyMaterialAAD is the associated data a key version's private material
// (or, for an HSM key, its reference in the token) is sealed with (a root
// key migration re-seals it).
func KeyMaterialAAD(vault, key, version string) []byte { return sealAAD(vault, key, version) }

func sealAAD(vault, key, version string) []byte {
	return []byte("custody/keyvault/key-version\x00" + strings.ToLower(vault) + "\x00" + strings.ToLower(key) + "\x00" + strings.ToLower(version))
}

// ---- identifiers and conversions ----

func (s *Service) keyURL(vault, name string) string {
	return "https://" + s.VaultHost(vault) + "/keys/" + name
}

func (s *Service) kid(vault, name, version string) string {
	return s.keyURL(vault, name) + "/" + version
}

func (s *Service) recoveryID(vault, name string) string {
	return "https://" + s.VaultHost(vault) + "/deletedkeys/" + name
}

// RecoveryLevel returns the recoveryLevel and recoverableDays Key Vault
// reports for objects in v.
func RecoveryLevel(v *Vault) (string, int) {
	days := v.SoftDeleteRetentionDays
	if days <= 0 {
		return "Purgeable", 0
	}
	level := "Recoverable"
	if days < 90 {
		level = "CustomizedRecoverable"
	}
	if !v.EnablePurgeProtection {
		level += "+Purgeable"
	}
	return level, days
}

// MaxKeyTime is the latest nbf or exp a key takes, in Unix seconds: the
// last second of year 9999, the end of the range Key Vault's clients
// represent.
const MaxKeyTime = 253402300799

func unixPtr(t *time.Time) *int64 {
	if t == nil {
		return nil
	}
	u := t.Unix()
	return &u
}

func unixOf(t time.Time) *int64 { u := t.Unix(); return &u }

func timePtr(u *int64) *time.Time {
	if u == nil {
		return nil
	}
	t := time.Unix(*u, 0).UTC()
	return &t
}

func (s *Service) attributes(v *Vault, kv *KeyVersion) KeyAttributes {
	level, days := RecoveryLevel(v)
	enabled := kv.Enabled
	a := KeyAttributes{
		Enabled: &enabled, NotBefore: unixPtr(kv.NotBefore), Expires: unixPtr(kv.Expires),
		Created: unixOf(kv.CreatedAt), Updated: unixOf(kv.UpdatedAt),
		RecoveryLevel: level, RecoverableDays: &days,
	}
	if kv.Exportable {
		a.Exportable = &kv.Exportable
	}
	return a
}

func (s *Service) bundle(v *Vault, k *Key, kv *KeyVersion) (*KeyBundle, error) {
	var j JSONWebKey
	if err := json.Unmarshal(kv.PublicJWK, &j); err != nil {
		return nil, custody.Internal(err, "stored public key of %s/%s is corrupt", k.Name, kv.Version)
	}
	j.Kid = s.kid(v.Name, k.Name, kv.Version)
	j.Kty = kv.Kty
	j.KeyOps = kv.KeyOps
	return &KeyBundle{Key: j, Attributes: s.attributes(v, kv), Tags: kv.Tags, Managed: k.Managed}, nil
}

func (s *Service) deletedBundle(v *Vault, k *Key, kv *KeyVersion) (*DeletedKeyBundle, error) {
	b, err := s.bundle(v, k, kv)
	if err != nil {
		return nil, err
	}
	d := &DeletedKeyBundle{KeyBundle: *b, DeletedDate: unixPtr(k.DeletedAt), ScheduledPurgeDate: unixPtr(k.ScheduledPurgeAt)}
	if v.SoftDeleteRetentionDays > 0 {
		d.RecoveryID = s.recoveryID(v.Name, k.Name)
	}
	return d, nil
}

// ---- checks ----

// liveVault returns the vault named by the request's host; a missing or
// soft-deleted vault is 404 VaultNotFound.
func (s *Service) liveVault(ctx context.Context, name string) (*Vault, error) {
	v, err := s.Vaults.Vault(ctx, name)
	if custody.IsNotFound(err) || err == nil && v.DeletedAt != nil {
		return nil, custody.Errorf(custody.KindNotFound, "VaultNotFound",
			"The vault '%s' does not exist or is deleted. Check the vault name, or recover the vault if it was deleted.", name)
	}
	return v, err
}

func keyNotFound(name string) error {
	return custody.Errorf(custody.KindNotFound, "KeyNotFound",
		"A key with (name/id) %s was not found in this key vault. If you recently deleted this key you may be able to recover it using the correct recovery command. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182", name)
}

func deletedKeyNotFound(name string) error {
	return custody.Errorf(custody.KindNotFound, "KeyNotFound", "Deleted Key not found: %s", name)
}

func deletedConflict(name string) error {
	e := custody.Errorf(custody.KindConflict, "Conflict",
		"Key %s is currently in a deleted but recoverable state, and its name cannot be reused; in this state, the key can only be recovered or purged.", name)
	e.Inner = "ObjectIsDeletedButRecoverable"
	return e
}

// liveKey returns the live key name of vault v: 404 if there is none or it
// is soft-deleted. (Creating, importing or restoring over a soft-deleted key
// is a 409; see keyForCreate.)
func (s *Service) liveKey(ctx context.Context, v *Vault, name string) (*Key, error) {
	if !ValidKeyName(name) {
		return nil, keyNotFound(name)
	}
	k, err := s.Keys.Key(ctx, v.Name, name)
	if custody.IsNotFound(err) {
		return nil, keyNotFound(name)
	}
	if err != nil {
		return nil, err
	}
	if k.DeletedAt != nil {
		// A soft-deleted key is gone for every operation but those on
		// /deletedkeys; Azure answers 404 and hints at recovery.
		return nil, keyNotFound(name)
	}
	return k, nil
}

// keyVersion returns version of k, or its latest version if version is "".
func (s *Service) keyVersion(ctx context.Context, v *Vault, k *Key, version string) (*KeyVersion, error) {
	var kv *KeyVersion
	var err error
	if version == "" {
		kv, err = s.Keys.LatestKeyVersion(ctx, v.Name, k.Name)
	} else {
		kv, err = s.Keys.KeyVersion(ctx, v.Name, k.Name, strings.ToLower(version))
	}
	if custody.IsNotFound(err) {
		if version == "" {
			return nil, keyNotFound(k.Name)
		}
		return nil, keyNotFound(k.Name + "/" + version)
	}
	return kv, err
}

func caller(ctx context.Context) (custody.Caller, error) {
	c, ok := custody.CallerFrom(ctx)
	if !ok || c.ObjectID == "" {
		return c, custody.Errorf(custody.KindUnauthenticated, "Unauthorized", "Request is missing a Bearer or PoP token.")
	}
	return c, nil
}

// scopeName is the key name a permission is checked for: name itself, or ""
// (the vault) when name is not a valid key name, so that a name holding a
// separator never reaches a role assignment's scope.
func scopeName(name string) string {
	if !ValidKeyName(name) {
		return ""
	}
	return name
}

// authorize checks that the caller may do op on key name of v (name is ""
// for vault-wide operations such as list). It runs before the name is looked
// up, so its answer does not depend on whether the key exists.
func (s *Service) authorize(ctx context.Context, v *Vault, name string, op operation) error {
	c, err := caller(ctx)
	if err != nil {
		return err
	}
	if v.EnableRbacAuthorization {
		scope := v.ID
		if name != "" {
			scope += "/keys/" + name
		}
		action := actionPrefix + op.action
		if s.RM == nil {
			return custody.Internal(nil, "no resource manager to check roles")
		}
		err := s.RM.Authorize(ctx, c.ObjectID, scope, action, true)
		if custody.ErrorKind(err) == custody.KindForbidden {
			e := custody.Errorf(custody.KindForbidden, "Forbidden",
				"Caller is not authorized to perform action on resource.\r\nIf role assignments were recently changed, please wait several minutes for role assignments to become effective.\r\nCaller: %s\r\nAction: '%s'\r\nResource: '%s'\r\nAssignment: (not found)\r\nDenyAssignmentId: null\r\nDecisionReason: null \r\nVault: %s;location=%s\r\n",
				c, action, strings.ToLower(scope), v.Name, v.Location)
			e.Inner = "ForbiddenByRbac"
			return e
		}
		return err
	}
	for _, p := range v.AccessPolicies {
		if !strings.EqualFold(p.ObjectID, c.ObjectID) {
			continue
		}
		for _, perm := range p.Keys {
			if strings.EqualFold(perm, op.perm) || strings.EqualFold(perm, "all") {
				return nil
			}
		}
	}
	e := custody.Errorf(custody.KindForbidden, "Forbidden",
		"The user, group or application '%s' does not have keys %s permission on key vault '%s;location=%s'. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125287",
		c, op.perm, v.Name, v.Location)
	e.Inner = "ForbiddenByPolicy"
	return e
}

// usable checks that kv may do the crypto operation keyOp now.
func (s *Service) usable(kv *KeyVersion, keyOp string) error {
	if !kv.Enabled {
		e := custody.Errorf(custody.KindForbidden, "Forbidden", "Operation %s is not allowed on a disabled key.", keyOp)
		e.Inner = "KeyDisabled"
		return e
	}
	now := s.now()
	if kv.NotBefore != nil && now.Before(*kv.NotBefore) {
		e := custody.Errorf(custody.KindForbidden, "Forbidden",
			"Operation %s is not allowed before the key's activation date (nbf) %s; wait until then or update the key's nbf.", keyOp, kv.NotBefore.UTC().Format(time.RFC3339))
		e.Inner = "KeyNotYetValid"
		return e
	}
	if kv.Expires != nil && !now.Before(*kv.Expires) {
		e := custody.Errorf(custody.KindForbidden, "Forbidden",
			"Operation %s is not allowed on an expired key: it expired (exp) at %s. Update the key's exp or use a newer version.", keyOp, kv.Expires.UTC().Format(time.RFC3339))
		e.Inner = "KeyExpired"
		return e
	}
	if keyOp != "get" && !slices.Contains(kv.KeyOps, keyOp) {
		e := custody.Errorf(custody.KindForbidden, "Forbidden",
			"Operation %s is not permitted on this key. The key allows %s; add the operation to key_ops with an update.", keyOp, strings.Join(kv.KeyOps, ", "))
		e.Inner = "KeyOperationForbidden"
		return e
	}
	return nil
}

func disabledForGet(kv *KeyVersion) error {
	if !kv.Enabled {
		e := custody.Errorf(custody.KindForbidden, "Forbidden", "Operation get is not allowed on a disabled key.")
		e.Inner = "KeyDisabled"
		return e
	}
	return nil
}

// ---- validation of request fields ----

func bad(format string, args ...any) error {
	return custody.Errorf(custody.KindInvalid, "BadParameter", format, args...)
}

func normalizeOps(kty string, ops []string) ([]string, error) {
	allowed := rsaOps
	if baseKty(kty) == KtyEC {
		allowed = ecOps
	}
	if ops == nil {
		return slices.Clone(allowed), nil
	}
	out := []string{}
	for _, op := range ops {
		n, ok := normalizeAlg(op, allowed...)
		if !ok {
			if strings.EqualFold(op, "import") {
				continue
			}
			return nil, bad("The key operation %q is not valid for a %s key; use %s.", op, kty, strings.Join(allowed, ", "))
		}
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out, nil
}

func checkTags(tags map[string]string) error {
	if len(tags) > 15 {
		return bad("A key may have at most 15 tags; this request has %d.", len(tags))
	}
	for k, v := range tags {
		if k == "" || len(k) > 512 || len(v) > 256 {
			return bad("Tag %q is not valid: names are 1 to 512 characters and values at most 256.", k)
		}
	}
	return nil
}

// applyAttributes sets the writable attributes of a on kv.
func applyAttributes(kv *KeyVersion, a *KeyAttributes) error {
	if a == nil {
		return nil
	}
	if a.Enabled != nil {
		kv.Enabled = *a.Enabled
	}
	for _, t := range []struct {
		name string
		v    *int64
	}{{"nbf", a.NotBefore}, {"exp", a.Expires}} {
		if t.v != nil && (*t.v < 0 || *t.v > MaxKeyTime) {
			return bad("The key's %s %d is out of range: give Unix seconds from 0 (1970-01-01) to %d (9999-12-31T23:59:59Z).", t.name, *t.v, int64(MaxKeyTime))
		}
	}
	if a.NotBefore != nil {
		kv.NotBefore = timePtr(a.NotBefore)
	}
	if a.Expires != nil {
		kv.Expires = timePtr(a.Expires)
	}
	if a.Exportable != nil && *a.Exportable {
		return bad("AKV.SKR.1004: Exportable keys must have release policy. Custody does not support key release; create the key with exportable false.")
	}
	if kv.NotBefore != nil && kv.Expires != nil && !kv.NotBefore.Before(*kv.Expires) {
		return bad("The key's activation date (nbf) must be before its expiry (exp).")
	}
	return nil
}

func noReleasePolicy(rp json.RawMessage) error {
	if len(rp) > 0 && string(rp) != "null" {
		return bad("Key release policies are not supported by this server; send the request without release_policy.")
	}
	return nil
}

// ---- audit ----

// call is one audited operation in progress.
type call struct {
	s       *Service
	ctx     context.Context
	op      operation
	vault   string
	key     string
	version string
	// crypto is set for crypto operations, whose result becomes an error
	// when their audit record cannot be stored (the result is all they do).
	crypto bool
}

// cryptoCall begins a crypto operation's call.
func (s *Service) cryptoCall(ctx context.Context, op operation, vault, key, version string) *call {
	c := s.begin(ctx, op, vault, key, version)
	c.crypto = true
	return c
}

func (s *Service) begin(ctx context.Context, op operation, vault, key, version string) *call {
	return &call{s: s, ctx: ctx, op: op, vault: vault, key: key, version: version}
}

func (c *call) end(errp *error) {
	outcome := "success"
	if *errp != nil {
		outcome = custody.ErrorCode(*errp)
		var ce *custody.Error
		if errors.As(*errp, &ce) && ce.Inner != "" {
			outcome += "/" + ce.Inner // e.g. Forbidden/ForbiddenByPolicy
		}
	}
	oid := "system"
	if cl, ok := custody.CallerFrom(c.ctx); ok {
		oid = cl.ObjectID
	}
	err := c.s.audit(&AuditRecord{
		Time: c.s.now().UTC(), CallerOID: oid, VaultName: clip(strings.ToLower(c.vault), 24), KeyName: clip(c.key, 127),
		Version: clip(c.version, 32), Operation: c.op.audit, Outcome: outcome,
	})
	if err != nil && *errp == nil && c.crypto {
		*errp = custody.Internal(err, "the audit record of %s on %s could not be stored, so its result is withheld", c.op.audit, c.key)
	}
}

// clip bounds a caller-chosen name before it is recorded: names longer than
// Azure allows (vaults 24, keys 127, versions 32 characters) are refused,
// but the refusal is audited, and must not store what the caller sent.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	i := n
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + "…"
}

// ---- key generation ----

func generate(kty string, size int, crv string) (crypto.Signer, error) {
	if baseKty(kty) == KtyRSA {
		k, err := rsa.GenerateKey(rand.Reader, size)
		if err != nil {
			return nil, custody.Internal(err, "generate RSA key")
		}
		k.Precompute()
		return k, nil
	}
	c, _, _ := curve(crv)
	k, err := ecdsa.GenerateKey(c, rand.Reader)
	if err != nil {
		return nil, custody.Internal(err, "generate EC key")
	}
	return k, nil
}

// newKeyVersion builds a version around priv, sealing the private key.
func (s *Service) newKeyVersion(vault, name, kty string, priv crypto.Signer, ops []string) (*KeyVersion, error) {
	var der []byte
	if hk, ok := priv.(HSMKey); ok {
		der = hsmRef(hk.ID())
	} else {
		var err error
		if der, err = x509.MarshalPKCS8PrivateKey(priv); err != nil {
			return nil, custody.Internal(err, "encode private key")
		}
	}
	var err error
	now := s.now().UTC().Truncate(time.Second)
	kv := &KeyVersion{
		VaultName: vault, KeyName: name, Version: newVersion(), Kty: kty, KeyOps: ops, Enabled: true,
		CreatedAt: now, UpdatedAt: now,
	}
	pub := publicJWK(kty, priv, nil)
	pub.Kty = ""
	switch k := priv.Public().(type) {
	case *rsa.PublicKey:
		kv.KeySize = k.N.BitLen()
	case *ecdsa.PublicKey:
		kv.Crv = k.Curve.Params().Name
	}
	if kv.PublicJWK, err = json.Marshal(pub); err != nil {
		return nil, custody.Internal(err, "encode public key")
	}
	kv.PrivateSealed = s.Sealer.Seal(der, sealAAD(vault, name, kv.Version))
	clear(der)
	s.cache().put(vault, name, kv.Version, kv.PrivateSealed, priv)
	return kv, nil
}

// keyForCreate returns the key a new version goes into: the existing live
// key, or a new one. A soft-deleted key is a 409.
func (s *Service) keyForCreate(ctx context.Context, v *Vault, name string) (*Key, error) {
	k, err := s.Keys.Key(ctx, v.Name, name)
	if custody.IsNotFound(err) {
		now := s.now().UTC()
		return &Key{VaultName: v.Name, Name: name, CreatedAt: now, UpdatedAt: now}, nil
	}
	if err != nil {
		return nil, err
	}
	if k.DeletedAt != nil {
		return nil, deletedConflict(k.Name)
	}
	return k, nil
}

// ---- operations ----

// CreateKey creates a new key, or a new version of an existing key.
func (s *Service) CreateKey(ctx context.Context, vault, name string, body Decoder) (_ *KeyBundle, err error) {
	c := s.begin(ctx, opCreate, vault, name, "")
	defer c.end(&err)
	v, err := s.liveVault(ctx, vault)
	if err != nil {
		return nil, err
	}
	if !ValidKeyName(name) {
		return nil, bad("The key name '%s' is not valid: use 1 to 127 letters, digits and hyphens.", name)
	}
	if err := s.authorize(ctx, v, name, opCreate); err != nil {
		return nil, err
	}
	k, err := s.keyForCreate(ctx, v, name)
	if err != nil {
		return nil, err
	}
	var p CreateKeyParameters
	if err := body(&p); err != nil {
		return nil, err
	}
	kty, ok := normalizeKty(p.Kty)
	if !ok {
		return nil, bad("The key type (kty) %q is not supported; create an RSA, RSA-HSM, EC or EC-HSM key.", p.Kty)
	}
	size, crv := 0, ""
	if baseKty(kty) == KtyRSA {
		size = 2048
		if p.KeySize != nil {
			size = *p.KeySize
		}
		if size != 2048 && size != 3072 && size != 4096 {
			return nil, bad("The key size %d is not supported for %s keys; use 2048, 3072 or 4096.", size, kty)
		}
		if p.PublicExponent != nil && *p.PublicExponent != 65537 {
			return nil, bad("The public exponent %d is not supported; omit it or use 65537.", *p.PublicExponent)
		}
		if p.Crv != "" {
			return nil, bad("An %s key has no curve; remove crv or create an EC key.", kty)
		}
	} else {
		crv = CrvP256
		if p.Crv != "" {
			var ok bool
			if _, crv, ok = curve(p.Crv); !ok {
				return nil, bad("The curve (crv) %q is not supported; use P-256, P-384 or P-521.", p.Crv)
			}
		}
		if p.KeySize != nil && *p.KeySize != map[string]int{CrvP256: 256, CrvP384: 384, CrvP521: 521}[crv] {
			return nil, bad("The key size %d does not match curve %s; omit key_size for EC keys.", *p.KeySize, crv)
		}
	}
	ops, err := normalizeOps(kty, p.KeyOps)
	if err != nil {
		return nil, err
	}
	if err := checkTags(p.Tags); err != nil {
		return nil, err
	}
	if err := noReleasePolicy(p.ReleasePolicy); err != nil {
		return nil, err
	}
	probe := &KeyVersion{Enabled: true}
	if err := applyAttributes(probe, p.Attributes); err != nil {
		return nil, err
	}
	priv, err := s.generateKey(v, name, kty, size, crv)
	if err != nil {
		return nil, err
	}
	return s.storeNewVersion(ctx, v, k, kty, priv, ops, probe, p.Tags, c)
}

func (s *Service) storeNewVersion(ctx context.Context, v *Vault, k *Key, kty string, priv crypto.Signer, ops []string, attrs *KeyVersion, tags map[string]string, c *call) (*KeyBundle, error) {
	kv, err := s.newKeyVersion(v.Name, k.Name, kty, priv, ops)
	if err != nil {
		return nil, err
	}
	if c != nil {
		c.version = kv.Version
	}
	kv.Enabled, kv.NotBefore, kv.Expires = attrs.Enabled, attrs.NotBefore, attrs.Expires
	kv.Tags = tags
	k.Tags = tags
	k.UpdatedAt = kv.CreatedAt
	if err := s.Keys.CreateKeyVersion(ctx, k, kv); err != nil {
		return nil, err
	}
	s.publish(v.Name, ChangeKeyVersionCreated, k.Name, kv.Version)
	return s.bundle(v, k, kv)
}

// ImportKey imports a key (private parts included) as a new version.
func (s *Service) ImportKey(ctx context.Context, vault, name string, body Decoder) (_ *KeyBundle, err error) {
	c := s.begin(ctx, opImport, vault, name, "")
	defer c.end(&err)
	v, err := s.liveVault(ctx, vault)
	if err != nil {
		return nil, err
	}
	if !ValidKeyName(name) {
		return nil, bad("The key name '%s' is not valid: use 1 to 127 letters, digits and hyphens.", name)
	}
	if err := s.authorize(ctx, v, name, opImport); err != nil {
		return nil, err
	}
	k, err := s.keyForCreate(ctx, v, name)
	if err != nil {
		return nil, err
	}
	var p ImportKeyParameters
	if err := body(&p); err != nil {
		return nil, err
	}
	if p.Key == nil {
		return nil, bad("The request has no key; send the JSON Web Key to import in 'key'.")
	}
	priv, err := p.Key.PrivateKey()
	if err != nil {
		return nil, err
	}
	kty, _ := normalizeKty(p.Key.Kty)
	if p.HSM != nil && *p.HSM && !strings.HasSuffix(kty, "-HSM") {
		kty += "-HSM"
	}
	ops, err := normalizeOps(kty, p.Key.KeyOps)
	if err != nil {
		return nil, err
	}
	if err := checkTags(p.Tags); err != nil {
		return nil, err
	}
	if err := noReleasePolicy(p.ReleasePolicy); err != nil {
		return nil, err
	}
	probe := &KeyVersion{Enabled: true}
	if err := applyAttributes(probe, p.Attributes); err != nil {
		return nil, err
	}
	if priv, err = s.importToHSM(v, name, kty, priv); err != nil {
		return nil, err
	}
	return s.storeNewVersion(ctx, v, k, kty, priv, ops, probe, p.Tags, c)
}

// GetKey returns a version of a key, or its latest version if version is "".
func (s *Service) GetKey(ctx context.Context, vault, name, version string) (_ *KeyBundle, err error) {
	c := s.begin(ctx, opGet, vault, name, version)
	defer c.end(&err)
	v, k, kv, err := s.resolve(ctx, vault, name, version, opGet)
	if err != nil {
		return nil, err
	}
	c.version = kv.Version
	if err := disabledForGet(kv); err != nil {
		return nil, err
	}
	return s.bundle(v, k, kv)
}

// resolve checks the caller's permission for op on key name, then finds the
// vault's live key and version.
func (s *Service) resolve(ctx context.Context, vault, name, version string, op operation) (*Vault, *Key, *KeyVersion, error) {
	v, err := s.liveVault(ctx, vault)
	if err != nil {
		return nil, nil, nil, err
	}
	if err := s.authorize(ctx, v, scopeName(name), op); err != nil {
		return nil, nil, nil, err
	}
	k, err := s.liveKey(ctx, v, name)
	if err != nil {
		return nil, nil, nil, err
	}
	kv, err := s.keyVersion(ctx, v, k, version)
	if err != nil {
		return nil, nil, nil, err
	}
	return v, k, kv, nil
}

// resolveKey checks the caller's permission for op on key name, then finds
// the live key, for operations on a key as a whole.
func (s *Service) resolveKey(ctx context.Context, vault, name string, op operation) (*Vault, *Key, error) {
	v, err := s.liveVault(ctx, vault)
	if err != nil {
		return nil, nil, err
	}
	if err := s.authorize(ctx, v, scopeName(name), op); err != nil {
		return nil, nil, err
	}
	k, err := s.liveKey(ctx, v, name)
	if err != nil {
		return nil, nil, err
	}
	return v, k, nil
}

// UpdateKey changes the attributes, permitted operations or tags of a
// version (the latest if version is "").
func (s *Service) UpdateKey(ctx context.Context, vault, name, version string, body Decoder) (_ *KeyBundle, err error) {
	c := s.begin(ctx, opUpdate, vault, name, version)
	defer c.end(&err)
	v, k, kv, err := s.resolve(ctx, vault, name, version, opUpdate)
	if err != nil {
		return nil, err
	}
	c.version = kv.Version
	var p UpdateKeyParameters
	if err := body(&p); err != nil {
		return nil, err
	}
	if err := noReleasePolicy(p.ReleasePolicy); err != nil {
		return nil, err
	}
	if err := applyAttributes(kv, p.Attributes); err != nil {
		return nil, err
	}
	if p.KeyOps != nil {
		if kv.KeyOps, err = normalizeOps(kv.Kty, p.KeyOps); err != nil {
			return nil, err
		}
	}
	if p.Tags != nil {
		if err := checkTags(p.Tags); err != nil {
			return nil, err
		}
		kv.Tags = p.Tags
	}
	kv.UpdatedAt = s.now().UTC()
	if err := s.Keys.UpdateKeyVersion(ctx, kv); err != nil {
		return nil, err
	}
	if !kv.Enabled {
		// A disabled version is refused by usable on every call whatever
		// is cached; its opened private key need not stay in memory.
		s.cache().dropVersion(v.Name, k.Name, kv.Version)
	}
	s.publish(v.Name, ChangeKeyUpdated, k.Name, kv.Version)
	if p.Tags != nil {
		if latest, err := s.Keys.LatestKeyVersion(ctx, v.Name, k.Name); err == nil && latest.Version == kv.Version {
			k.Tags, k.UpdatedAt = p.Tags, kv.UpdatedAt
			if err := s.Keys.UpdateKey(ctx, k); err != nil {
				return nil, err
			}
		}
	}
	return s.bundle(v, k, kv)
}

// DeleteKey soft-deletes a key with all its versions. In a vault without
// soft delete the key is purged at once.
func (s *Service) DeleteKey(ctx context.Context, vault, name string) (_ *DeletedKeyBundle, err error) {
	c := s.begin(ctx, opDelete, vault, name, "")
	defer c.end(&err)
	v, k, kv, err := s.resolve(ctx, vault, name, "", opDelete)
	if err != nil {
		return nil, err
	}
	now := s.now().UTC()
	k.DeletedAt = &now
	if v.SoftDeleteRetentionDays <= 0 {
		hv := s.versionsOf(ctx, v.Name, k.Name)
		if err := s.Keys.PurgeKey(ctx, v.Name, k.Name); err != nil {
			return nil, err
		}
		s.cache().dropKey(v.Name, k.Name)
		s.destroyHSMKeys(hv)
		s.publish(v.Name, ChangeKeyDeleted, k.Name, "")
		return s.deletedBundle(v, k, kv)
	}
	purge := now.AddDate(0, 0, v.SoftDeleteRetentionDays)
	k.ScheduledPurgeAt = &purge
	k.UpdatedAt = now
	if err := s.Keys.UpdateKey(ctx, k); err != nil {
		return nil, err
	}
	s.cache().dropKey(v.Name, k.Name)
	s.publish(v.Name, ChangeKeyDeleted, k.Name, "")
	return s.deletedBundle(v, k, kv)
}

// deletedKey returns the soft-deleted key name of v (404 if there is none).
func (s *Service) deletedKey(ctx context.Context, v *Vault, name string) (*Key, *KeyVersion, error) {
	if !ValidKeyName(name) {
		return nil, nil, deletedKeyNotFound(name)
	}
	k, err := s.Keys.Key(ctx, v.Name, name)
	if custody.IsNotFound(err) || err == nil && k.DeletedAt == nil {
		return nil, nil, deletedKeyNotFound(name)
	}
	if err != nil {
		return nil, nil, err
	}
	kv, err := s.Keys.LatestKeyVersion(ctx, v.Name, k.Name)
	if err != nil {
		return nil, nil, err
	}
	return k, kv, nil
}

// GetDeletedKey returns a soft-deleted key.
func (s *Service) GetDeletedKey(ctx context.Context, vault, name string) (_ *DeletedKeyBundle, err error) {
	c := s.begin(ctx, opGetDeleted, vault, name, "")
	defer c.end(&err)
	v, err := s.liveVault(ctx, vault)
	if err != nil {
		return nil, err
	}
	if err := s.authorize(ctx, v, scopeName(name), opGetDeleted); err != nil {
		return nil, err
	}
	k, kv, err := s.deletedKey(ctx, v, name)
	if err != nil {
		return nil, err
	}
	return s.deletedBundle(v, k, kv)
}

// RecoverDeletedKey brings a soft-deleted key back with all its versions.
func (s *Service) RecoverDeletedKey(ctx context.Context, vault, name string) (_ *KeyBundle, err error) {
	c := s.begin(ctx, opRecover, vault, name, "")
	defer c.end(&err)
	v, err := s.liveVault(ctx, vault)
	if err != nil {
		return nil, err
	}
	if err := s.authorize(ctx, v, scopeName(name), opRecover); err != nil {
		return nil, err
	}
	k, kv, err := s.deletedKey(ctx, v, name)
	if err != nil {
		return nil, err
	}
	k.DeletedAt, k.ScheduledPurgeAt = nil, nil
	k.UpdatedAt = s.now().UTC()
	if err := s.Keys.UpdateKey(ctx, k); err != nil {
		return nil, err
	}
	s.publish(v.Name, ChangeKeyRecovered, k.Name, "")
	return s.bundle(v, k, kv)
}

// PurgeDeletedKey removes a soft-deleted key for good. Under purge
// protection it is refused until the retention period has passed.
func (s *Service) PurgeDeletedKey(ctx context.Context, vault, name string) (err error) {
	c := s.begin(ctx, opPurge, vault, name, "")
	defer c.end(&err)
	v, err := s.liveVault(ctx, vault)
	if err != nil {
		return err
	}
	if err := s.authorize(ctx, v, scopeName(name), opPurge); err != nil {
		return err
	}
	k, _, err := s.deletedKey(ctx, v, name)
	if err != nil {
		return err
	}
	if v.EnablePurgeProtection && (k.ScheduledPurgeAt == nil || s.now().Before(*k.ScheduledPurgeAt)) {
		e := custody.Errorf(custody.KindForbidden, "Forbidden",
			"Operation \"purge\" is not allowed because purge protection is enabled for this vault. Key Vault service will automatically purge it after the retention period has passed (scheduled for %s). Vault: %s;location=%s",
			k.ScheduledPurgeAt.UTC().Format(time.RFC3339), v.Name, v.Location)
		e.Inner = "PurgeProtected"
		return e
	}
	hv := s.versionsOf(ctx, v.Name, k.Name)
	if err := s.Keys.PurgeKey(ctx, v.Name, k.Name); err != nil {
		return err
	}
	s.cache().dropKey(v.Name, k.Name)
	s.destroyHSMKeys(hv)
	s.publish(v.Name, ChangeKeyPurged, k.Name, "")
	return nil
}

// Page selects a page of a list. Skip is how many entries to skip (from the
// $skiptoken of a nextLink), Max the page size (maxresults, 1 to 25; 0 means
// 25). Link builds the absolute nextLink for a skip value.
type Page struct {
	Skip int
	Max  int
	Link func(skip, max int) string
}

func (p Page) bounds(n int) (int, int, *string) {
	size := p.Max
	if size <= 0 || size > 25 {
		size = 25
	}
	start := min(max(p.Skip, 0), n)
	end := min(start+size, n)
	var next *string
	if end < n && p.Link != nil {
		l := p.Link(end, size)
		next = &l
	}
	return start, end, next
}

// ListKeys lists the live keys of a vault with versionless ids.
func (s *Service) ListKeys(ctx context.Context, vault string, page Page) (_ *KeyList, err error) {
	c := s.begin(ctx, opList, vault, "", "")
	defer c.end(&err)
	v, err := s.liveVault(ctx, vault)
	if err != nil {
		return nil, err
	}
	if err := s.authorize(ctx, v, "", opList); err != nil {
		return nil, err
	}
	keys, err := s.Keys.ListKeys(ctx, v.Name, false)
	if err != nil {
		return nil, err
	}
	start, end, next := page.bounds(len(keys))
	out := &KeyList{Value: []KeyItem{}, NextLink: next}
	for _, k := range keys[start:end] {
		kv, err := s.Keys.LatestKeyVersion(ctx, v.Name, k.Name)
		if custody.IsNotFound(err) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out.Value = append(out.Value, KeyItem{Kid: s.keyURL(v.Name, k.Name), Attributes: s.attributes(v, kv), Tags: k.Tags, Managed: k.Managed})
	}
	return out, nil
}

// ListKeyVersions lists the versions of a key, oldest first.
func (s *Service) ListKeyVersions(ctx context.Context, vault, name string, page Page) (_ *KeyList, err error) {
	c := s.begin(ctx, opListVer, vault, name, "")
	defer c.end(&err)
	v, k, err := s.resolveKey(ctx, vault, name, opListVer)
	if err != nil {
		return nil, err
	}
	vs, err := s.Keys.ListKeyVersions(ctx, v.Name, k.Name)
	if err != nil {
		return nil, err
	}
	start, end, next := page.bounds(len(vs))
	out := &KeyList{Value: []KeyItem{}, NextLink: next}
	for _, kv := range vs[start:end] {
		out.Value = append(out.Value, KeyItem{Kid: s.kid(v.Name, k.Name, kv.Version), Attributes: s.attributes(v, kv), Tags: kv.Tags, Managed: k.Managed})
	}
	return out, nil
}

// ListDeletedKeys lists the soft-deleted keys of a vault.
func (s *Service) ListDeletedKeys(ctx context.Context, vault string, page Page) (_ *DeletedKeyList, err error) {
	c := s.begin(ctx, opListDeleted, vault, "", "")
	defer c.end(&err)
	v, err := s.liveVault(ctx, vault)
	if err != nil {
		return nil, err
	}
	if err := s.authorize(ctx, v, "", opListDeleted); err != nil {
		return nil, err
	}
	keys, err := s.Keys.ListKeys(ctx, v.Name, true)
	if err != nil {
		return nil, err
	}
	start, end, next := page.bounds(len(keys))
	out := &DeletedKeyList{Value: []DeletedKeyItem{}, NextLink: next}
	for _, k := range keys[start:end] {
		kv, err := s.Keys.LatestKeyVersion(ctx, v.Name, k.Name)
		if custody.IsNotFound(err) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out.Value = append(out.Value, DeletedKeyItem{
			KeyItem:    KeyItem{Kid: s.keyURL(v.Name, k.Name), Attributes: s.attributes(v, kv), Tags: k.Tags, Managed: k.Managed},
			RecoveryID: s.recoveryID(v.Name, k.Name), DeletedDate: unixPtr(k.DeletedAt), ScheduledPurgeDate: unixPtr(k.ScheduledPurgeAt),
		})
	}
	return out, nil
}

// RotateKey creates a new version of a key with the same type, size or
// curve and permitted operations. If the key's rotation policy has an
// expiryTime, the new version expires that long after its creation.
func (s *Service) RotateKey(ctx context.Context, vault, name string) (_ *KeyBundle, err error) {
	c := s.begin(ctx, opRotate, vault, name, "")
	defer c.end(&err)
	v, k, kv, err := s.resolve(ctx, vault, name, "", opRotate)
	if err != nil {
		return nil, err
	}
	return s.rotate(ctx, v, k, kv, c)
}

func (s *Service) rotate(ctx context.Context, v *Vault, k *Key, latest *KeyVersion, c *call) (*KeyBundle, error) {
	priv, err := s.generateKey(v, k.Name, latest.Kty, latest.KeySize, latest.Crv)
	if err != nil {
		return nil, err
	}
	attrs := &KeyVersion{Enabled: true}
	if k.RotationPolicy != nil && k.RotationPolicy.ExpiryTime != "" {
		if d, err := parseDuration(k.RotationPolicy.ExpiryTime); err == nil {
			exp := d.addTo(s.now().UTC().Truncate(time.Second))
			attrs.Expires = &exp
		}
	}
	return s.storeNewVersion(ctx, v, k, latest.Kty, priv, slices.Clone(latest.KeyOps), attrs, k.Tags, c)
}

// KeyOperation runs a crypto operation (op is a key_ops name: encrypt,
// decrypt, wrapKey, unwrapKey, sign or verify) with a version of a key, or
// its latest version if version is "". It returns a *KeyOperationResult, or
// a *VerifyResult for verify.
func (s *Service) KeyOperation(ctx context.Context, vault, name, version, op string, body Decoder) (_ any, err error) {
	o, ok := cryptoOperation[op]
	if !ok {
		return nil, bad("Unknown key operation %q.", op)
	}
	c := s.cryptoCall(ctx, o, vault, name, version)
	defer c.end(&err)
	v, k, kv, err := s.resolve(ctx, vault, name, version, o)
	if err != nil {
		return nil, err
	}
	c.version = kv.Version
	if err := s.usable(kv, op); err != nil {
		return nil, err
	}
	kid := s.kid(v.Name, k.Name, kv.Version)
	if op == OpVerify {
		var p VerifyParameters
		if err := body(&p); err != nil {
			return nil, err
		}
		alg, ok := normalizeAlg(p.Alg, sigAlgs...)
		if !ok {
			return nil, bad("The signature algorithm %q is not supported; use RS256/384/512, PS256/384/512 or ES256/384/512.", p.Alg)
		}
		var j JSONWebKey
		if err := json.Unmarshal(kv.PublicJWK, &j); err != nil {
			return nil, custody.Internal(err, "stored public key is corrupt")
		}
		j.Kty = kv.Kty
		pub, err := j.publicKey()
		if err != nil {
			return nil, custody.Internal(err, "stored public key is corrupt")
		}
		okSig, err := verifyDigest(pub, kv.Kty, alg, p.Digest, p.Value)
		if err != nil {
			return nil, err
		}
		return &VerifyResult{Value: okSig}, nil
	}
	var p KeyOperationParameters
	if err := body(&p); err != nil {
		return nil, err
	}
	if op == OpSign {
		alg, ok := normalizeAlg(p.Alg, sigAlgs...)
		if !ok {
			return nil, bad("The signature algorithm %q is not supported; use RS256/384/512, PS256/384/512 or ES256/384/512.", p.Alg)
		}
		priv, err := s.open(kv)
		if err != nil {
			return nil, err
		}
		sig, err := signDigest(priv, kv.Kty, alg, p.Value)
		if err != nil {
			return nil, err
		}
		return &KeyOperationResult{Kid: kid, Value: sig}, nil
	}
	if baseKty(kv.Kty) != KtyRSA {
		return nil, bad("Operation %s needs an RSA key; key %s is an %s key, which can only sign and verify.", op, k.Name, kv.Kty)
	}
	alg, ok := normalizeAlg(p.Alg, encAlgs...)
	if !ok {
		return nil, bad("The algorithm %q is not supported for %s; use RSA-OAEP, RSA-OAEP-256 or RSA1_5.", p.Alg, op)
	}
	if len(p.Value) == 0 {
		return nil, bad("The value to %s is empty; send it base64url-encoded in 'value'.", op)
	}
	var out []byte
	switch op {
	case OpEncrypt, OpWrapKey:
		var j JSONWebKey
		if err := json.Unmarshal(kv.PublicJWK, &j); err != nil {
			return nil, custody.Internal(err, "stored public key is corrupt")
		}
		j.Kty = kv.Kty
		pub, err := j.publicKey()
		if err != nil {
			return nil, custody.Internal(err, "stored public key is corrupt")
		}
		out, err = rsaEncrypt(pub.(*rsa.PublicKey), alg, p.Value)
		if err != nil {
			return nil, err
		}
	default:
		priv, err := s.open(kv)
		if err != nil {
			return nil, err
		}
		out, err = rsaDecrypt(priv, alg, p.Value)
		if err != nil {
			return nil, err
		}
	}
	return &KeyOperationResult{Kid: kid, Value: out}, nil
}

// open returns the private key of kv, from the cache of opened keys when the
// sealed material matches.
func (s *Service) open(kv *KeyVersion) (crypto.Signer, error) {
	if priv := s.cache().get(kv.VaultName, kv.KeyName, kv.Version, kv.PrivateSealed); priv != nil {
		return priv, nil
	}
	der, err := s.Sealer.Open(kv.PrivateSealed, sealAAD(kv.VaultName, kv.KeyName, kv.Version))
	if err != nil {
		return nil, custody.Internal(err, "open key material of %s/%s", kv.KeyName, kv.Version)
	}
	defer clear(der)
	if id, ok := hsmID(der); ok {
		if s.HSM == nil {
			return nil, custody.Errorf(custody.KindUnavailable, "ServiceUnavailable",
				"Key %s/%s lives in a hardware security module, and this server was started without one; the operator must start it with its PKCS#11 root key (--root-key pkcs11:...).", kv.KeyName, kv.Version)
		}
		hk, err := s.HSM.Open(id)
		if err != nil {
			return nil, custody.Internal(err, "open key %s/%s in the HSM", kv.KeyName, kv.Version)
		}
		s.cache().put(kv.VaultName, kv.KeyName, kv.Version, kv.PrivateSealed, hk)
		return hk, nil
	}
	key, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, custody.Internal(err, "parse key material of %s/%s", kv.KeyName, kv.Version)
	}
	priv, ok := key.(crypto.Signer)
	if !ok {
		return nil, custody.Internal(nil, "key material of %s/%s is not a signing key", kv.KeyName, kv.Version)
	}
	if r, ok := priv.(*rsa.PrivateKey); ok {
		r.Precompute()
	}
	s.cache().put(kv.VaultName, kv.KeyName, kv.Version, kv.PrivateSealed, priv)
	return priv, nil
}
