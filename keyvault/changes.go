package keyvault

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"custody"
	"custody/rm"
)

// Change kinds of the change feed.
const (
	ChangeKeyVersionCreated    = "KeyVersionCreated"
	ChangeKeyUpdated           = "KeyUpdated" // attributes: enabled, nbf, exp, operations
	ChangeKeyDeleted           = "KeyDeleted"
	ChangeKeyRecovered         = "KeyRecovered"
	ChangeKeyPurged            = "KeyPurged"
	ChangeKeyRestored          = "KeyRestored"
	ChangeAccessPolicyChanged  = "AccessPolicyChanged"
	ChangeRoleAssignmentChange = "RoleAssignmentChanged"
	ChangePrincipalDeleted     = "PrincipalDeleted"
	ChangeVaultDeleted         = "VaultDeleted"
	ChangeVaultRecovered       = "VaultRecovered"
	ChangeVaultPurged          = "VaultPurged"
)

// Change is one entry of a vault's change feed, as the feed answers it.
type Change struct {
	Cursor  string    `json:"cursor"`
	Kind    string    `json:"kind"`
	Key     string    `json:"key,omitempty"`     // key name, for key changes
	Version string    `json:"version,omitempty"` // key version, when one version changed
	Time    time.Time `json:"time"`
}

// ChangePage is the answer of GET /custody/changes.
type ChangePage struct {
	Value []Change `json:"value"`
	// Cursor is where the next request continues (its since).
	Cursor string `json:"cursor"`
	// Missed is true when changes after since are no longer held (the
	// cursor is older than the feed's memory, or from before a restart):
	// the subscriber must treat everything it watches as changed.
	Missed bool `json:"missed,omitempty"`
}

// change is a change as the feed holds it, before filtering.
type change struct {
	seq   uint64
	vault string // lower case; "" for every vault (a deleted principal)
	kind  string
	key   string
	ver   string
	time  time.Time
	// principals are the principals whose access changed (access policy,
	// role assignment, deleted principal); nil means everyone's.
	principals []string
}

// changeLog is the in-memory change feed: the last maxChanges changes of
// every vault, numbered within one process's epoch.
type changeLog struct {
	mu      sync.Mutex
	epoch   string
	seq     uint64
	ring    []change // oldest first
	wake    chan struct{}
	maxKeep int
}

const maxChanges = 16384

func newChangeLog() *changeLog {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return &changeLog{epoch: hex.EncodeToString(b), wake: make(chan struct{}), maxKeep: maxChanges}
}

func (l *changeLog) cursor(seq uint64) string { return l.epoch + "-" + strconv.FormatUint(seq, 10) }

func (l *changeLog) add(c change) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.seq++
	c.seq = l.seq
	if len(l.ring) >= l.maxKeep {
		n := copy(l.ring, l.ring[len(l.ring)/4:])
		l.ring = l.ring[:n]
	}
	l.ring = append(l.ring, c)
	close(l.wake)
	l.wake = make(chan struct{})
}

// since returns the changes after seq, the latest seq, whether some were
// forgotten, and a channel closed on the next change.
func (l *changeLog) since(seq uint64) ([]change, uint64, bool, <-chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	missed := len(l.ring) > 0 && l.ring[0].seq > seq+1
	i, _ := slices.BinarySearchFunc(l.ring, seq+1, func(c change, s uint64) int {
		return int(int64(c.seq) - int64(s))
	})
	return slices.Clone(l.ring[i:]), l.seq, missed, l.wake
}

func (s *Service) changes() *changeLog {
	s.changeOnce.Do(func() { s.changeLg = newChangeLog() })
	return s.changeLg
}

func (s *Service) publish(vault, kind, key, version string, principals ...string) {
	s.changes().add(change{vault: strings.ToLower(vault), kind: kind, key: key, ver: version, time: s.now().UTC(), principals: principals})
}

// publishVaultUpdate publishes an AccessPolicyChanged change for the
// principals whose key permissions differ between cur and next (for
// everyone when the permission model changed); nothing if none do.
func (s *Service) publishVaultUpdate(cur, next *Vault) {
	if cur == nil {
		return // a new vault has no keys yet
	}
	if cur.EnableRbacAuthorization != next.EnableRbacAuthorization {
		s.publish(next.Name, ChangeAccessPolicyChanged, "", "")
		return
	}
	perms := func(ps []AccessPolicy) map[string]string {
		m := map[string]string{}
		for _, p := range ps {
			ks := make([]string, len(p.Keys))
			for i, k := range p.Keys {
				ks[i] = strings.ToLower(k)
			}
			slices.Sort(ks)
			oid := strings.ToLower(p.ObjectID)
			m[oid] = strings.TrimPrefix(m[oid]+","+strings.Join(ks, ","), ",")
		}
		return m
	}
	a, b := perms(cur.AccessPolicies), perms(next.AccessPolicies)
	var changed []string
	for oid, p := range a {
		if b[oid] != p {
			changed = append(changed, oid)
		}
	}
	for oid := range b {
		if _, ok := a[oid]; !ok {
			changed = append(changed, oid)
		}
	}
	if len(changed) > 0 {
		slices.Sort(changed)
		s.publish(next.Name, ChangeAccessPolicyChanged, "", "", changed...)
	}
}

// RoleAssignmentChanged is the resource manager's observer (see
// rm.Service.ObserveRoleAssignments): an assignment of principalID at scope
// was created or deleted. Every vault at or below scope, or above it (an
// assignment on one of its keys), gets a RoleAssignmentChanged change for
// that principal.
func (s *Service) RoleAssignmentChanged(ctx context.Context, scope, principalID string) {
	if s.RM == nil {
		return
	}
	for _, deleted := range []bool{false, true} {
		vs, err := s.Vaults.ListVaults(ctx, s.RM.SubscriptionID, "", deleted)
		if err != nil {
			s.logger().Warn("change feed: list vaults", "err", err)
			return
		}
		for _, v := range vs {
			if v.EnableRbacAuthorization && (rm.Within(v.ID, scope) || rm.Within(scope, v.ID)) {
				s.publish(v.Name, ChangeRoleAssignmentChange, "", "", strings.ToLower(principalID))
			}
		}
	}
}

// PrincipalDeleted is the identity service's observer: principalID no
// longer exists, so it can reach no vault. Its own subscriptions get a
// PrincipalDeleted change from every vault.
func (s *Service) PrincipalDeleted(principalID string) {
	s.publish("", ChangePrincipalDeleted, "", "", strings.ToLower(principalID))
}

// parseCursor reads a cursor of this feed: its sequence number, and false
// when it belongs to another epoch (a previous run of the server).
func (l *changeLog) parseCursor(c string) (uint64, bool, error) {
	epoch, n, ok := strings.Cut(c, "-")
	seq, err := strconv.ParseUint(n, 10, 64)
	if !ok || err != nil || epoch == "" {
		return 0, false, custody.Errorf(custody.KindInvalid, "BadParameter",
			"The cursor %q is not valid; use the cursor of the previous answer of /custody/changes, or leave since out to start now.", clip(c, 64))
	}
	return seq, epoch == l.epoch, nil
}

// MaxChangesWait is the longest a change feed request waits for a change.
const MaxChangesWait = 50 * time.Second

// Changes answers GET /custody/changes on a vault's data plane (a Custody
// extension; see the package doc). Without since it answers at once with
// the current cursor. With since it answers the changes after it that the
// caller may see, waiting up to wait for one if there is none yet.
func (s *Service) Changes(ctx context.Context, vault, since string, wait time.Duration) (_ *ChangePage, err error) {
	c := s.begin(ctx, opChanges, vault, "", "")
	defer c.end(&err)
	cl, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	v, err := s.Vaults.Vault(ctx, vault)
	if custody.IsNotFound(err) {
		return nil, custody.Errorf(custody.KindNotFound, "VaultNotFound", "The vault %s does not exist.", vault)
	}
	if err != nil {
		return nil, err
	}
	if err := s.authorizeFeed(ctx, v); err != nil {
		return nil, err
	}
	l := s.changes()
	if since == "" {
		_, latest, _, _ := l.since(^uint64(0) - 1)
		return &ChangePage{Value: []Change{}, Cursor: l.cursor(latest)}, nil
	}
	seq, sameEpoch, err := l.parseCursor(since)
	if err != nil {
		return nil, err
	}
	if !sameEpoch {
		_, latest, _, _ := l.since(^uint64(0) - 1)
		return &ChangePage{Value: []Change{}, Cursor: l.cursor(latest), Missed: true}, nil
	}
	wait = min(max(wait, 0), MaxChangesWait)
	timer := time.NewTimer(wait)
	defer timer.Stop()
	name := strings.ToLower(v.Name)
	oid := strings.ToLower(cl.ObjectID)
	for {
		cs, latest, missed, wake := l.since(seq)
		if seq > latest {
			return nil, custody.Errorf(custody.KindInvalid, "BadParameter",
				"The cursor %q is ahead of the feed; use the cursor of the previous answer.", clip(since, 64))
		}
		page := &ChangePage{Value: []Change{}, Cursor: l.cursor(latest), Missed: missed}
		for _, ch := range cs {
			if s.visible(ctx, v, name, oid, ch) {
				page.Value = append(page.Value, Change{Cursor: l.cursor(ch.seq), Kind: ch.kind, Key: ch.key, Version: ch.ver, Time: ch.time})
			}
		}
		if len(page.Value) > 0 || missed {
			return page, nil
		}
		seq = latest
		select {
		case <-wake:
		case <-timer.C:
			return page, nil
		case <-ctx.Done():
			return page, nil
		}
		if v2, err := s.Vaults.Vault(ctx, vault); err == nil {
			v = v2 // policies may have changed
		}
	}
}

// visible reports whether the caller oid may see ch of vault v: key changes
// need the right to read that key now; access changes are shown only to
// the principals whose access changed; vault changes to every subscriber.
func (s *Service) visible(ctx context.Context, v *Vault, name, oid string, ch change) bool {
	if ch.vault != name && ch.vault != "" {
		return false
	}
	if ch.principals != nil {
		return slices.Contains(ch.principals, oid)
	}
	if ch.key == "" {
		return true
	}
	return s.authorize(ctx, v, scopeName(ch.key), opGet) == nil
}

// authorizeFeed lets in a caller that may read keys of v: vault-wide, or
// (role-based access) on at least one of its keys.
func (s *Service) authorizeFeed(ctx context.Context, v *Vault) error {
	err := s.authorize(ctx, v, "", opGet)
	if err == nil || !v.EnableRbacAuthorization || s.RM == nil || custody.ErrorKind(err) != custody.KindForbidden {
		return err
	}
	cl, _ := caller(ctx)
	as, lerr := s.RM.Store.RoleAssignmentsForPrincipal(ctx, cl.ObjectID)
	if lerr != nil {
		return lerr
	}
	for _, a := range as {
		if !rm.Within(a.Scope, v.ID) {
			continue
		}
		i := strings.LastIndexByte(a.RoleDefinitionID, '/')
		if role, ok := rm.RoleByGUID(a.RoleDefinitionID[i+1:]); ok && role.Allows(actionPrefix+opGet.action, true) {
			return nil
		}
	}
	return err
}
