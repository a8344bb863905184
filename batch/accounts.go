package batch

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"custody"
	"custody/rm"
)

// Identities is what the batch service needs of the identity service.
type Identities interface {
	// CreateSystemAssigned creates (or returns) the system-assigned identity
	// of resourceID and returns its principal id.
	CreateSystemAssigned(ctx context.Context, resourceID string) (principalID string, err error)
	DeleteSystemAssigned(ctx context.Context, resourceID string) error
	// UserAssigned returns the ids of a user-assigned identity resource
	// (KindNotFound if it does not exist).
	UserAssigned(ctx context.Context, resourceID string) (UserAssignedIdentity, error)
}

// DataDeleter deletes an account's data-plane records (jobs, tasks,
// certificates, pools) when the account is deleted.
type DataDeleter interface {
	DeleteAccountData(ctx context.Context, accountName string) error
}

// Service manages batch accounts, their keys and their key health.
type Service struct {
	Accounts AccountStore
	Platform *PlatformKEK
	// Sealer seals the accounts' shared keys under the root key.
	Sealer     Sealer
	Vault      VaultClient
	Identities Identities
	RM         *rm.Service
	TenantID   string
	Domain     string
	Port       int
	// Data deletes data-plane records with the account; may be nil.
	Data DataDeleter
	// ProbeInterval is how often the key-health monitor probes each
	// customer-managed key (default 5 s).
	ProbeInterval time.Duration
	// GracePeriod is how long a vault outage (timeouts, 5xx, 429) is ridden
	// out on the cached DEK before the account locks (default 1 minute).
	GracePeriod time.Duration
	Now         func() time.Time
	NewID       func() string
	// External reaches keys in vaults outside this server; nil allows
	// only this server's vaults, {vault}.vault.{Domain} on Port.
	External *ExternalVaults
	// KeyObservers are told when an account's key becomes inaccessible
	// (locked) or accessible again; compute uses this to stop and resume
	// the account's nodes.
	KeyObservers []func(account string, locked bool)

	// ProbeRate is the most safety-net probes the monitor makes a second
	// (default 20); with more probe groups than ProbeInterval allows at
	// that rate, the cycle grows to groups/ProbeRate seconds. Probes that
	// change feed events trigger are not counted.
	ProbeRate float64
	// Fence, if set, is asked before each probe of the monitor whether
	// this server may still act on keys; an error skips the probe.
	// Replicas pass their hold on the cluster's active lease.
	Fence func(ctx context.Context) error

	// Resealers are the stores of records sealed with account DEKs, which
	// a re-encryption walks (see Reencrypt).
	Resealers []Resealer
	// ReencryptBatch is how many records a re-encryption re-seals in one
	// transaction (default 500).
	ReencryptBatch int
	// ReencryptSettle is how long after its last rewrite a re-encryption
	// waits before it counts what is left and deletes the old DEK
	// (default 3 s): requests that read a record before it was re-sealed
	// and write it back within that time are caught.
	ReencryptSettle time.Duration

	monOnce   sync.Once
	monState  *monitorState
	reencKick chan struct{}

	mu    sync.Mutex
	deks  map[string]*DEK        // by lower-cased account name
	locks map[string]*sync.Mutex // serialises key changes per account
}

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func (s *Service) probeInterval() time.Duration {
	if s.ProbeInterval > 0 {
		return s.ProbeInterval
	}
	return 5 * time.Second
}

func (s *Service) gracePeriod() time.Duration {
	if s.GracePeriod > 0 {
		return s.GracePeriod
	}
	return time.Minute
}

// AccountEndpoint returns {account}.batch.{domain}:{port}.
func (s *Service) AccountEndpoint(name string) string {
	h := strings.ToLower(name) + ".batch." + s.Domain
	if s.Port != 443 && s.Port != 0 {
		h += ":" + strconv.Itoa(s.Port)
	}
	return h
}

func (s *Service) accountLock(name string) *sync.Mutex {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.locks == nil {
		s.locks = map[string]*sync.Mutex{}
	}
	k := strings.ToLower(name)
	if s.locks[k] == nil {
		s.locks[k] = &sync.Mutex{}
	}
	return s.locks[k]
}

func (s *Service) cacheDEK(name string, d *DEK) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.deks == nil {
		s.deks = map[string]*DEK{}
	}
	if d == nil {
		delete(s.deks, strings.ToLower(name))
		return
	}
	s.deks[strings.ToLower(name)] = d
}

func (s *Service) cachedDEK(name string) *DEK {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.deks[strings.ToLower(name)]
}

var accountName = regexp.MustCompile(`^[a-z0-9]{3,24}$`)

// ValidateName checks a batch account name.
func ValidateName(name string) error {
	if !accountName.MatchString(name) {
		return custody.Errorf(custody.KindInvalid, "AccountNameInvalid",
			"The account name %q is invalid: use 3 to 24 lowercase letters and digits.", name)
	}
	return nil
}

// CreateAccount creates an account: its identity, its DEK, and the DEK's
// wrap under the platform key or the customer's key. With a customer key the
// whole check of EnableCustomerKey runs first and nothing is stored if it
// fails.
func (s *Service) CreateAccount(ctx context.Context, a *Account) (*Account, error) {
	if err := ValidateName(a.Name); err != nil {
		return nil, err
	}
	if strings.TrimSpace(a.Location) == "" {
		return nil, custody.Errorf(custody.KindInvalid, "LocationRequired", "The location property is required for batch account %q (for example \"westus2\").", a.Name)
	}
	loc, ok := custody.NormalizeLocation(a.Location)
	if !ok {
		return nil, custody.LocationError(a.Location, "Microsoft.Batch/batchAccounts")
	}
	if err := custody.CheckTags(a.Tags, "batch account '"+a.Name+"'"); err != nil {
		return nil, err
	}
	a.Location = loc
	if err := s.RM.RequireGroup(ctx, a.SubscriptionID, a.ResourceGroup); err != nil {
		return nil, err
	}
	if existing, err := s.Accounts.Account(ctx, a.Name); err == nil {
		if strings.EqualFold(existing.ID, a.ID) {
			return nil, custody.Errorf(custody.KindConflict, "AccountAlreadyExists", "The batch account %q already exists; use update (PATCH) to change it.", a.Name)
		}
		return nil, custody.Errorf(custody.KindConflict, "AccountNameUnavailable", "The batch account name %q is already taken (account names are host names and unique on this server).", a.Name)
	} else if !custody.IsNotFound(err) {
		return nil, err
	}
	a.UID = s.NewID()
	now := s.now().UTC()
	a.CreatedAt, a.UpdatedAt = now, now
	a.ProvisioningState = "Succeeded"
	if a.PoolAllocationMode == "" {
		a.PoolAllocationMode = "BatchService"
	}
	if a.PublicNetworkAccess == "" {
		a.PublicNetworkAccess = "Enabled"
	}
	if a.Encryption.KeySource == "" {
		a.Encryption.KeySource = KeySourceBatch
	}
	if err := s.resolveUserAssigned(ctx, &a.Identity); err != nil {
		return nil, err
	}
	if err := validateIdentityType(a.Identity.Type); err != nil {
		return nil, err
	}
	if a.Encryption.KeySource == KeySourceKeyVault && a.Identity.Type == IdentitySystemAssigned {
		return nil, custody.Errorf(custody.KindInvalid, "SystemAssignedIdentityNotYetAuthorized",
			"Account %q cannot use a customer-managed key at creation with a system-assigned identity: the identity does not exist yet, so no key vault can have granted it access. Create the account first, grant its identity (principalId) Get, Wrap Key and Unwrap Key on the vault, then set the key; or create the account with a user-assigned identity that already has access.", a.Name)
	}
	dekBytes := GenerateDEKBytes()
	a.Key = AccountKey{Generation: 1, State: KeyAvailable, Since: now, LastProbe: now}
	switch a.Encryption.KeySource {
	case KeySourceBatch:
		if a.Encryption.KeyIdentifier != "" {
			return nil, custody.Errorf(custody.KindInvalid, "InvalidEncryptionSettings", "keyVaultProperties.keyIdentifier is only allowed with keySource Microsoft.KeyVault.")
		}
		w, err := s.Platform.Wrap(ctx, a.UID, dekBytes)
		if err != nil {
			return nil, err
		}
		a.Key.Wrapped = w
	case KeySourceKeyVault:
		w, err := s.wrapWithCustomerKey(ctx, a, a.Encryption.KeyIdentifier, dekBytes)
		if err != nil {
			return nil, err
		}
		a.Key.Wrapped = w
	default:
		return nil, custody.Errorf(custody.KindInvalid, "InvalidKeySource", "keySource %q is not valid: use Microsoft.Batch or Microsoft.KeyVault.", a.Encryption.KeySource)
	}
	if a.AuthModes != nil {
		modes, err := CheckAuthModes(a.AuthModes)
		if err != nil {
			return nil, err
		}
		a.AuthModes = modes
	}
	if s.Sealer != nil {
		raw, err := newSharedKeys()
		if err != nil {
			return nil, err
		}
		if a.SharedKeys, err = s.sealKeys(a.UID, raw); err != nil {
			return nil, err
		}
	}
	if a.Identity.Type == IdentitySystemAssigned {
		pid, err := s.Identities.CreateSystemAssigned(ctx, a.ID)
		if err != nil {
			return nil, err
		}
		a.Identity.PrincipalID, a.Identity.TenantID = pid, s.TenantID
	}
	if err := s.Accounts.CreateAccount(ctx, a); err != nil {
		if a.Identity.Type == IdentitySystemAssigned {
			_ = s.Identities.DeleteSystemAssigned(context.WithoutCancel(ctx), a.ID)
		}
		return nil, err
	}
	s.watch(a)
	dek, err := NewDEK(dekBytes, a.Key.Generation)
	if err != nil {
		return nil, err
	}
	s.cacheDEK(a.Name, dek)
	return a, nil
}

func validateIdentityType(t string) error {
	switch t {
	case IdentityNone, IdentitySystemAssigned, IdentityUserAssigned:
		return nil
	}
	return custody.Errorf(custody.KindInvalid, "InvalidIdentityType", "identity.type %q is not valid: use None, SystemAssigned or UserAssigned.", t)
}

// resolveUserAssigned fills in the ids of each user-assigned identity and
// checks that they exist.
func (s *Service) resolveUserAssigned(ctx context.Context, id *AccountIdentity) error {
	if id.Type == "" {
		id.Type = IdentityNone
	}
	if id.Type != IdentityUserAssigned {
		if len(id.UserAssigned) > 0 {
			return custody.Errorf(custody.KindInvalid, "InvalidIdentity", "userAssignedIdentities may be given only with identity type UserAssigned.")
		}
		return nil
	}
	if len(id.UserAssigned) == 0 {
		return custody.Errorf(custody.KindInvalid, "InvalidIdentity", "identity type UserAssigned needs at least one entry in userAssignedIdentities (the identity's resource id).")
	}
	out := map[string]UserAssignedIdentity{}
	for rid := range id.UserAssigned {
		u, err := s.Identities.UserAssigned(ctx, rid)
		if custody.IsNotFound(err) {
			return custody.Errorf(custody.KindInvalid, "InvalidIdentity", "The user-assigned identity %s does not exist. Create it first (custody identity create).", rid)
		}
		if err != nil {
			return err
		}
		out[rid] = u
	}
	id.UserAssigned = out
	return nil
}

// keyPrincipal returns the principal id the account reaches its key with:
// its (first, by resource id) user-assigned identity, else its
// system-assigned one.
func keyPrincipal(a *Account) (string, error) {
	if len(a.Identity.UserAssigned) > 0 {
		ids := make([]string, 0, len(a.Identity.UserAssigned))
		for rid := range a.Identity.UserAssigned {
			ids = append(ids, rid)
		}
		sort.Strings(ids)
		return a.Identity.UserAssigned[ids[0]].PrincipalID, nil
	}
	if a.Identity.PrincipalID != "" {
		return a.Identity.PrincipalID, nil
	}
	return "", custody.Errorf(custody.KindInvalid, "AccountIdentityRequired",
		"Account %q has no managed identity, so it cannot reach a key vault. Set identity type SystemAssigned or UserAssigned first, grant that identity Get, Wrap Key and Unwrap Key on the vault, then set the key.", a.Name)
}

// wrapWithCustomerKey runs every check a customer key must pass, then wraps
// dek with it and proves the wrap by unwrapping it again.
func (s *Service) wrapWithCustomerKey(ctx context.Context, a *Account, identifier string, dek []byte) (WrappedDEK, error) {
	if identifier == "" {
		return WrappedDEK{}, custody.Errorf(custody.KindInvalid, "KeyIdentifierRequired",
			"keySource Microsoft.KeyVault needs keyVaultProperties.keyIdentifier: the key's identifier from the vault (https://{vault}.vault.{domain}:{port}/keys/{name}[/{version}]).")
	}
	id, err := ParseKeyID(identifier)
	if err != nil {
		return WrappedDEK{}, err
	}
	principal, err := keyPrincipal(a)
	if err != nil {
		return WrappedDEK{}, err
	}
	vc, err := s.vault(id)
	if err != nil {
		return WrappedDEK{}, err
	}
	refuse := func(code, format string, args ...any) (WrappedDEK, error) {
		return WrappedDEK{}, custody.Errorf(custody.KindInvalid, code, format, args...)
	}
	info, err := vc.GetKey(ctx, id, principal)
	if err != nil {
		var ke *KeyError
		if errors.As(err, &ke) {
			return refuse("KeyVaultAccessFailed", "Cannot use key %s for account %q: %s. Grant the account's identity (principal id %s) Get, Wrap Key and Unwrap Key on the vault, and check that the vault and key exist.", id, a.Name, ke.Reason, principal)
		}
		return WrappedDEK{}, err
	}
	if info.Kty != "RSA" && info.Kty != "RSA-HSM" {
		return refuse("InvalidKeyType", "Key %s is of type %s; a batch account needs an RSA key of 2048 bits or more (EC keys are not supported).", id, info.Kty)
	}
	if info.KeySize < 2048 {
		return refuse("InvalidKeySize", "Key %s is RSA-%d; a batch account needs at least 2048 bits.", id, info.KeySize)
	}
	if !info.Enabled {
		return refuse("KeyDisabled", "Key %s is disabled. Enable it in the vault, then set it again.", info.KID)
	}
	now := s.now()
	if info.Expires != nil && now.After(*info.Expires) {
		return refuse("KeyExpired", "Key %s expired at %s. Create a new version, or extend its expiry.", info.KID, info.Expires.UTC().Format(time.RFC3339))
	}
	if info.NotBefore != nil && now.Before(*info.NotBefore) {
		return refuse("KeyNotYetValid", "Key %s is not valid before %s.", info.KID, info.NotBefore.UTC().Format(time.RFC3339))
	}
	if len(info.KeyOps) > 0 && (!slices.Contains(info.KeyOps, "wrapKey") || !slices.Contains(info.KeyOps, "unwrapKey")) {
		return refuse("KeyOperationsNotPermitted", "Key %s does not permit wrapKey and unwrapKey (its permitted operations are %s). Add Wrap Key and Unwrap Key to its permitted operations.", info.KID, strings.Join(info.KeyOps, ", "))
	}
	if info.RecoveryLevel != "" && strings.Contains(info.RecoveryLevel, "Purgeable") {
		return refuse("KeyVaultPurgeProtectionRequired", "The vault of key %s must have soft delete and purge protection enabled (its recovery level is %s). Enable purge protection on the vault.", id, info.RecoveryLevel)
	}
	kid, wrapped, err := vc.WrapKey(ctx, id, principal, dek)
	if err != nil {
		var ke *KeyError
		if errors.As(err, &ke) {
			return refuse("KeyVaultAccessFailed", "Cannot wrap with key %s for account %q: %s. The identity %s needs the Wrap Key permission.", id, a.Name, ke.Reason, principal)
		}
		return WrappedDEK{}, err
	}
	if vc, err = s.vault(kid); err != nil {
		return refuse("KeyRoundTripFailed", "The vault of key %s answered with the key id %s, whose vault host this server does not use; it cannot protect account %q.", id, kid, a.Name)
	}
	back, err := vc.UnwrapKey(ctx, kid, principal, wrapped)
	if err != nil {
		var ke *KeyError
		if errors.As(err, &ke) {
			return refuse("KeyVaultAccessFailed", "Cannot unwrap with key %s for account %q: %s. The identity %s needs the Unwrap Key permission.", kid, a.Name, ke.Reason, principal)
		}
		return WrappedDEK{}, err
	}
	if string(back) != string(dek) {
		return refuse("KeyRoundTripFailed", "Key %s did not unwrap what it wrapped; it cannot protect account %q.", kid, a.Name)
	}
	return WrappedDEK{KeySource: KeySourceKeyVault, KeyID: kid.String(), Algorithm: "RSA-OAEP-256", Identity: principal, Ciphertext: wrapped}, nil
}

// unwrap unwraps an account's DEK through its KEK, with its old generation
// during a re-encryption.
func (s *Service) unwrap(ctx context.Context, a *Account) (*DEK, error) {
	d, err := s.unwrapOne(ctx, a, a.Key.Wrapped, a.Key.Generation)
	if err != nil || a.Key.Old == nil {
		return d, err
	}
	old, err := s.unwrapOne(ctx, a, a.Key.Old.Wrapped, a.Key.Old.Generation)
	if err != nil {
		return nil, err
	}
	return d.WithOld(old), nil
}

func oldGeneration(a *Account) uint32 {
	if a.Key.Old == nil {
		return 0
	}
	return a.Key.Old.Generation
}

// rewrap wraps dek and its old generation with wrap, for a key change.
func rewrap(dek *DEK, wrap func(raw []byte) (WrappedDEK, error)) (WrappedDEK, *OldDEK, error) {
	w, err := wrap(dek.raw)
	if err != nil || dek.old == nil {
		return w, nil, err
	}
	ow, err := wrap(dek.old.raw)
	if err != nil {
		return WrappedDEK{}, nil, err
	}
	return w, &OldDEK{Generation: dek.old.gen, Wrapped: ow}, nil
}

func (s *Service) unwrapOne(ctx context.Context, a *Account, wrapped WrappedDEK, gen uint32) (*DEK, error) {
	var raw []byte
	var err error
	switch wrapped.KeySource {
	case KeySourceBatch:
		raw, err = s.Platform.Unwrap(ctx, a.UID, wrapped)
	case KeySourceKeyVault:
		id, perr := ParseKeyID(wrapped.KeyID)
		if perr != nil {
			return nil, &KeyError{Definite: true, Reason: "the stored key identifier does not parse", Err: perr}
		}
		vc, herr := s.vault(id)
		if herr != nil {
			return nil, &KeyError{Definite: true, Reason: "the key's vault cannot be used: " + errText(herr), Err: herr}
		}
		raw, err = vc.UnwrapKey(ctx, id, wrapped.Identity, wrapped.Ciphertext)
	default:
		return nil, &KeyError{Definite: true, Reason: "unknown key source " + wrapped.KeySource}
	}
	if err != nil {
		return nil, err
	}
	return NewDEK(raw, gen)
}

// Account returns an account.
func (s *Service) Account(ctx context.Context, name string) (*Account, error) {
	return s.Accounts.Account(ctx, name)
}

// lockedError is the error every data-plane call and management change of a
// locked account answers.
func lockedError(a *Account) error {
	return custody.Errorf(custody.KindConflict, "AccountKeyInaccessible",
		"Batch account %q cannot be used: its customer-managed key %s is inaccessible since %s (%s). Restore access to the key (access policy, enabled key, recovered key or vault, identity); the account unlocks within seconds. Reading the account and deleting it still work.",
		a.Name, a.Encryption.KeyIdentifier, a.Key.Since.UTC().Format(time.RFC3339), a.Key.Reason)
}

// DEK returns the account and its unwrapped DEK for data-plane use. A locked
// account answers AccountKeyInaccessible.
func (s *Service) DEK(ctx context.Context, name string) (*Account, *DEK, error) {
	a, err := s.Accounts.Account(ctx, name)
	if err != nil {
		return nil, nil, err
	}
	if a.Key.State == KeyInaccessible {
		s.cacheDEK(a.Name, nil)
		return nil, nil, lockedError(a)
	}
	if d := s.cachedDEK(a.Name); d != nil && d.Generation() == a.Key.Generation && d.OldGeneration() == oldGeneration(a) {
		return a, d, nil
	}
	d, err := s.unwrap(ctx, a)
	if err != nil {
		var ke *KeyError
		if errors.As(err, &ke) {
			if ke.Definite {
				s.lock(ctx, a, ke.Reason)
				return nil, nil, lockedError(a)
			}
			return nil, nil, custody.Errorf(custody.KindUnavailable, "KeyVaultUnavailable", "The key vault of account %q cannot be reached right now (%s); retry shortly.", a.Name, ke.Reason)
		}
		return nil, nil, err
	}
	s.cacheDEK(a.Name, d)
	return a, d, nil
}

// SetEncryption changes an account's key: a new version of the same key, a
// different key, a versionless identifier, or back to Microsoft.Batch. The
// DEK is unwrapped with the current key, wrapped with the new one, proved by
// a round trip, and stored with the new setting in one compare-and-swap
// write. Its cost does not depend on how much data the account holds.
func (s *Service) SetEncryption(ctx context.Context, name string, enc Encryption) (*Account, error) {
	mu := s.accountLock(name)
	mu.Lock()
	defer mu.Unlock()
	a, err := s.Accounts.Account(ctx, name)
	if err != nil {
		return nil, err
	}
	if enc.KeySource == "" {
		enc.KeySource = KeySourceBatch
	}
	if a.Key.State == KeyInaccessible {
		if enc.KeySource == KeySourceBatch {
			return nil, custody.Errorf(custody.KindConflict, "AccountKeyInaccessible",
				"Account %q cannot switch back to Microsoft-managed keys while its customer-managed key %s is inaccessible (%s): the account's data cannot be unwrapped. Restore access to the key first.", a.Name, a.Encryption.KeyIdentifier, a.Key.Reason)
		}
	}
	dek, err := s.unwrap(ctx, a)
	if err != nil {
		var ke *KeyError
		if errors.As(err, &ke) {
			if ke.Definite {
				s.lock(ctx, a, ke.Reason)
			}
			return nil, custody.Errorf(custody.KindConflict, "AccountKeyInaccessible",
				"Account %q cannot change its key: the current key %s cannot unwrap the account's data key (%s). Restore access to the current key first.", a.Name, a.Key.Wrapped.KeyID, ke.Reason)
		}
		return nil, err
	}
	// During a re-encryption both DEK generations are rewrapped.
	prev := a.Key.Wrapped.KeyID
	switch enc.KeySource {
	case KeySourceBatch:
		if enc.KeyIdentifier != "" {
			return nil, custody.Errorf(custody.KindInvalid, "InvalidEncryptionSettings", "keyVaultProperties.keyIdentifier is only allowed with keySource Microsoft.KeyVault.")
		}
		w, old, err := rewrap(dek, func(raw []byte) (WrappedDEK, error) {
			w, err := s.Platform.Wrap(ctx, a.UID, raw)
			if err != nil {
				return WrappedDEK{}, err
			}
			back, err := s.Platform.Unwrap(ctx, a.UID, w)
			if err != nil || string(back) != string(raw) {
				return WrappedDEK{}, custody.Internal(err, "platform key round trip failed")
			}
			return w, nil
		})
		if err != nil {
			return nil, err
		}
		a.Key.Wrapped, a.Key.Old = w, old
	case KeySourceKeyVault:
		// A versionless identifier is resolved by the first wrap; the old
		// generation is wrapped by the same version.
		id := enc.KeyIdentifier
		w, old, err := rewrap(dek, func(raw []byte) (WrappedDEK, error) {
			w, err := s.wrapWithCustomerKey(ctx, a, id, raw)
			if err == nil {
				id = w.KeyID
			}
			return w, err
		})
		if err != nil {
			return nil, err
		}
		a.Key.Wrapped, a.Key.Old = w, old
	default:
		return nil, custody.Errorf(custody.KindInvalid, "InvalidKeySource", "keySource %q is not valid: use Microsoft.Batch or Microsoft.KeyVault.", enc.KeySource)
	}
	now := s.now().UTC()
	a.Encryption = enc
	a.UpdatedAt = now
	a.Key.State, a.Key.Reason, a.Key.Since, a.Key.LastProbe = KeyAvailable, "", now, now
	if err := s.Accounts.UpdateAccount(ctx, a, prev); err != nil {
		return nil, err
	}
	s.watch(a)
	s.cacheDEK(a.Name, dek)
	return a, nil
}

// Update applies tag and identity changes (and, through SetEncryption, key
// changes) to an account. A locked account refuses every change.
func (s *Service) Update(ctx context.Context, name string, tags map[string]string, identity *AccountIdentity, enc *Encryption) (*Account, error) {
	if err := custody.CheckTags(tags, "batch account '"+name+"'"); err != nil {
		return nil, err
	}
	a, err := s.Accounts.Account(ctx, name)
	if err != nil {
		return nil, err
	}
	if a.Key.State == KeyInaccessible {
		// Only a key change may go through: it succeeds if the current key
		// has become reachable again, and refuses specifically otherwise.
		if enc != nil && tags == nil && identity == nil {
			return s.SetEncryption(ctx, name, *enc)
		}
		return nil, lockedError(a)
	}
	if identity != nil {
		mu := s.accountLock(name)
		mu.Lock()
		err := s.changeIdentity(ctx, a, *identity)
		mu.Unlock()
		if err != nil {
			return nil, err
		}
	}
	if tags != nil {
		mu := s.accountLock(name)
		mu.Lock()
		cur, err := s.Accounts.Account(ctx, name)
		if err == nil {
			cur.Tags, cur.UpdatedAt = tags, s.now().UTC()
			err = s.Accounts.UpdateAccount(ctx, cur, cur.Key.Wrapped.KeyID)
		}
		mu.Unlock()
		if err != nil {
			return nil, err
		}
	}
	if enc != nil {
		cur, err := s.Accounts.Account(ctx, name)
		if err != nil {
			return nil, err
		}
		if enc.KeySource != cur.Encryption.KeySource || enc.KeyIdentifier != cur.Encryption.KeyIdentifier {
			return s.SetEncryption(ctx, name, *enc)
		}
	}
	return s.Accounts.Account(ctx, name)
}

func (s *Service) changeIdentity(ctx context.Context, a *Account, id AccountIdentity) error {
	if err := validateIdentityType(id.Type); err != nil {
		return err
	}
	if err := s.resolveUserAssigned(ctx, &id); err != nil {
		return err
	}
	if a.Encryption.KeySource == KeySourceKeyVault {
		// The key must stay reachable with the new identity.
		probe := *a
		probe.Identity = id
		if id.Type == IdentitySystemAssigned {
			probe.Identity.PrincipalID = a.Identity.PrincipalID
		}
		newPrincipal, err := keyPrincipal(&probe)
		if err != nil || newPrincipal != a.Key.Wrapped.Identity {
			return custody.Errorf(custody.KindInvalid, "IdentityInUseByEncryption",
				"Account %q reaches its customer-managed key %s with identity %s; that identity must stay on the account. Switch the key (or back to Microsoft.Batch) first.", a.Name, a.Encryption.KeyIdentifier, a.Key.Wrapped.Identity)
		}
	}
	hadSystem := a.Identity.Type == IdentitySystemAssigned
	if id.Type == IdentitySystemAssigned {
		pid, err := s.Identities.CreateSystemAssigned(ctx, a.ID)
		if err != nil {
			return err
		}
		id.PrincipalID, id.TenantID = pid, s.TenantID
	}
	a.Identity, a.UpdatedAt = id, s.now().UTC()
	if err := s.Accounts.UpdateAccount(ctx, a, a.Key.Wrapped.KeyID); err != nil {
		return err
	}
	s.watch(a)
	if hadSystem && id.Type != IdentitySystemAssigned {
		return s.Identities.DeleteSystemAssigned(ctx, a.ID)
	}
	return nil
}

// Delete deletes an account, its data and its system-assigned identity. It
// works whatever the state of the account's key.
func (s *Service) Delete(ctx context.Context, name string) error {
	mu := s.accountLock(name)
	mu.Lock()
	defer mu.Unlock()
	a, err := s.Accounts.Account(ctx, name)
	if err != nil {
		return err
	}
	if s.Data != nil {
		if err := s.Data.DeleteAccountData(ctx, a.Name); err != nil {
			return err
		}
	}
	if err := s.Accounts.DeleteAccount(ctx, a.Name); err != nil {
		return err
	}
	s.unwatch(a.Name)
	s.cacheDEK(a.Name, nil)
	if a.Identity.Type == IdentitySystemAssigned {
		return s.Identities.DeleteSystemAssigned(ctx, a.ID)
	}
	return nil
}

// DeleteInGroup deletes every account of a resource group (rm.GroupCleaner).
func (s *Service) DeleteInGroup(ctx context.Context, sub, rg string) error {
	as, err := s.Accounts.ListAccounts(ctx, sub, rg)
	if err != nil {
		return err
	}
	for _, a := range as {
		if err := s.Delete(ctx, a.Name); err != nil && !custody.IsNotFound(err) {
			return err
		}
	}
	return nil
}

// lock marks an account's key inaccessible and drops its DEK from memory.
func (s *Service) lock(ctx context.Context, a *Account, reason string) {
	s.cacheDEK(a.Name, nil)
	if a.Key.State == KeyInaccessible && a.Key.Reason == reason {
		return
	}
	k := a.Key
	if k.State != KeyInaccessible {
		k.Since = s.now().UTC()
	}
	k.State, k.Reason = KeyInaccessible, reason
	if err := s.Accounts.UpdateKeyState(context.WithoutCancel(ctx), a.Name, k); err == nil {
		a.Key = k
	}
	s.watch(a)
	s.notifyKeyState(a.Name, true)
}

func (s *Service) notifyKeyState(account string, locked bool) {
	for _, f := range s.KeyObservers {
		f(account, locked)
	}
	if !locked {
		// A paused re-encryption resumes.
		s.kickReencryption()
	}
}

// String describes the key state for logs.
func (k AccountKey) String() string {
	if k.State == KeyInaccessible {
		return fmt.Sprintf("%s since %s: %s", k.State, k.Since.Format(time.RFC3339), k.Reason)
	}
	return k.State
}
