package keyvault

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"strings"
	"time"

	"custody"
)

// A backup blob holds a key with every version, private material included,
// sealed under the server's root key with associated data naming the vault's
// tenant and subscription: it restores only on this server (or one sharing
// its root key), into a vault of the same subscription and tenant, as Azure
// restricts restores to the same subscription and geography.

const backupFormat = 1

type backupBlob struct {
	Format         int               `json:"format"`
	Name           string            `json:"name"`
	Tags           map[string]string `json:"tags,omitempty"`
	Managed        bool              `json:"managed,omitempty"`
	CreatedAt      time.Time         `json:"createdAt"`
	RotationPolicy *RotationPolicy   `json:"rotationPolicy,omitempty"`
	Versions       []backupVersion   `json:"versions"`
}

type backupVersion struct {
	Version    string            `json:"version"`
	Kty        string            `json:"kty"`
	Crv        string            `json:"crv,omitempty"`
	KeySize    int               `json:"keySize,omitempty"`
	KeyOps     []string          `json:"keyOps"`
	Enabled    bool              `json:"enabled"`
	NotBefore  *time.Time        `json:"nbf,omitempty"`
	Expires    *time.Time        `json:"exp,omitempty"`
	Tags       map[string]string `json:"tags,omitempty"`
	CreatedAt  time.Time         `json:"createdAt"`
	UpdatedAt  time.Time         `json:"updatedAt"`
	PublicJWK  json.RawMessage   `json:"publicJwk"`
	PrivateKey []byte            `json:"privateKey"` // PKCS #8 DER
}

func backupAAD(v *Vault) []byte {
	return []byte("custody/keyvault/key-backup\x00" + strings.ToLower(v.TenantID) + "\x00" + strings.ToLower(v.SubscriptionID))
}

// BackupKey returns an opaque blob holding a key and all its versions.
func (s *Service) BackupKey(ctx context.Context, vault, name string) (_ *BackupResult, err error) {
	c := s.begin(ctx, opBackup, vault, name, "")
	defer c.end(&err)
	v, k, _, err := s.resolve(ctx, vault, name, "", opBackup)
	if err != nil {
		return nil, err
	}
	vs, err := s.Keys.ListKeyVersions(ctx, v.Name, k.Name)
	if err != nil {
		return nil, err
	}
	for _, kv := range vs {
		if isHSMKty(kv.Kty) {
			return nil, custody.Errorf(custody.KindInvalid, "BadParameter",
				"Key %s is an %s key held in this server's hardware security module: its private part never leaves the token, so it cannot be backed up. Back up the token itself with its vendor's tools, or use a software key (RSA or EC) where a backup blob is needed.", k.Name, kv.Kty)
		}
	}
	b := backupBlob{Format: backupFormat, Name: k.Name, Tags: k.Tags, Managed: k.Managed, CreatedAt: k.CreatedAt, RotationPolicy: k.RotationPolicy}
	defer func() {
		for _, bv := range b.Versions {
			clear(bv.PrivateKey)
		}
	}()
	for _, kv := range vs {
		der, err := s.Sealer.Open(kv.PrivateSealed, sealAAD(kv.VaultName, kv.KeyName, kv.Version))
		if err != nil {
			return nil, custody.Internal(err, "open key material of %s/%s", kv.KeyName, kv.Version)
		}
		b.Versions = append(b.Versions, backupVersion{
			Version: kv.Version, Kty: kv.Kty, Crv: kv.Crv, KeySize: kv.KeySize, KeyOps: kv.KeyOps, Enabled: kv.Enabled,
			NotBefore: kv.NotBefore, Expires: kv.Expires, Tags: kv.Tags, CreatedAt: kv.CreatedAt, UpdatedAt: kv.UpdatedAt,
			PublicJWK: kv.PublicJWK, PrivateKey: der,
		})
	}
	plain, err := json.Marshal(b)
	if err != nil {
		return nil, custody.Internal(err, "encode backup")
	}
	defer clear(plain)
	return &BackupResult{Value: s.Sealer.Seal(plain, backupAAD(v))}, nil
}

// RestoreKey restores a backup blob into a vault of the same subscription
// and tenant. The key's name must be free: neither live nor soft-deleted.
func (s *Service) RestoreKey(ctx context.Context, vault string, body Decoder) (_ *KeyBundle, err error) {
	c := s.begin(ctx, opRestore, vault, "", "")
	defer c.end(&err)
	v, err := s.liveVault(ctx, vault)
	if err != nil {
		return nil, err
	}
	if err := s.authorize(ctx, v, "", opRestore); err != nil {
		return nil, err
	}
	var p RestoreParameters
	if err := body(&p); err != nil {
		return nil, err
	}
	if len(p.Value) == 0 {
		return nil, bad("The request has no backup blob; send the value a backup returned in 'value'.")
	}
	plain, err := s.Sealer.Open(p.Value, backupAAD(v))
	if err != nil {
		return nil, bad("The backup blob cannot be restored into vault '%s': it is corrupt, or it was made by another server or in another subscription or tenant. Restore it into a vault of the subscription it came from.", v.Name)
	}
	defer clear(plain)
	var b backupBlob
	if err := json.Unmarshal(plain, &b); err != nil || b.Format != backupFormat || !ValidKeyName(b.Name) || len(b.Versions) == 0 {
		return nil, bad("The backup blob has an unknown format; it cannot be restored.")
	}
	c.key = b.Name
	switch existing, err := s.Keys.Key(ctx, v.Name, b.Name); {
	case err == nil && existing.DeletedAt != nil:
		return nil, deletedConflict(existing.Name)
	case err == nil:
		return nil, custody.Errorf(custody.KindConflict, "Conflict",
			"Key %s already exists in vault '%s'; a backup restores only under a free name. Delete and purge the key first, or restore into another vault.", existing.Name, v.Name)
	case !custody.IsNotFound(err):
		return nil, err
	}
	now := s.now().UTC()
	k := &Key{VaultName: v.Name, Name: b.Name, Tags: b.Tags, Managed: b.Managed, CreatedAt: b.CreatedAt, UpdatedAt: now, RotationPolicy: b.RotationPolicy}
	versions := make([]*KeyVersion, 0, len(b.Versions))
	for _, bv := range b.Versions {
		if isHSMKty(bv.Kty) {
			return nil, bad("The backup blob holds an %s key version; HSM keys cannot be restored from a backup blob.", bv.Kty)
		}
	}
	for _, bv := range b.Versions {
		der := bv.PrivateKey
		if _, err := x509.ParsePKCS8PrivateKey(der); err != nil {
			return nil, bad("The backup blob holds a damaged key version; it cannot be restored.")
		}
		versions = append(versions, &KeyVersion{
			VaultName: v.Name, KeyName: b.Name, Version: strings.ToLower(bv.Version), Kty: bv.Kty, Crv: bv.Crv, KeySize: bv.KeySize,
			KeyOps: bv.KeyOps, Enabled: bv.Enabled, NotBefore: bv.NotBefore, Expires: bv.Expires, Tags: bv.Tags,
			CreatedAt: bv.CreatedAt, UpdatedAt: bv.UpdatedAt, PublicJWK: bv.PublicJWK,
			PrivateSealed: s.Sealer.Seal(der, sealAAD(v.Name, b.Name, bv.Version)),
		})
		clear(der)
	}
	last := versions[len(versions)-1]
	if err := s.Keys.RestoreKey(ctx, k, versions); err != nil {
		return nil, err
	}
	s.publish(v.Name, ChangeKeyRestored, k.Name, "")
	latest, err := s.Keys.LatestKeyVersion(ctx, v.Name, k.Name)
	if err != nil {
		latest = last
	}
	c.version = latest.Version
	return s.bundle(v, k, latest)
}
