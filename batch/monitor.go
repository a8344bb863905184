package batch

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"custody"
)

// The key monitor.
//
// Accounts are grouped by what a probe proves: the key version that wraps
// their DEK and the identity that reaches it. One unwrap through the vault
// answers for the whole group; only accounts that must change state (a
// locked account unlocking needs its own DEK, a versionless identifier
// following a new version needs its own rewrap) are probed on their own.
//
// Two things trigger probes:
//
//   - the vault's change feed (GET /custody/changes, see package keyvault):
//     one long-poll per vault host and identity in use, with that identity's
//     token, as an outside subscriber. A change of a key re-probes the groups
//     of that key and identity at once; a change of the identity's access, of
//     the vault, a refused or lost subscription, or a feed that says changes
//     were missed re-probes every group of that vault and identity;
//   - the safety net, for missed changes, outages and vaults that publish
//     nothing (external vaults have no change feed): every group is probed at least once per cycle, where a cycle
//     is ProbeInterval, or longer when the groups do not fit ProbeRate
//     probes a second (groups/ProbeRate seconds). Groups with a locked
//     account are probed every ProbeInterval.

// probeGroupKey names a probe group: the versioned key id and the identity.
type probeGroupKey struct{ keyID, identity string }

// feedKey names a change feed subscription: the vault URL and the identity.
type feedKey struct{ vaultURL, identity string }

type watchedAccount struct {
	group       probeGroupKey
	feed        feedKey
	keyName     string // lower case
	locked      bool
	versionless bool
}

type probeGroup struct {
	key      probeGroupKey
	feed     feedKey
	keyName  string
	members  map[string]bool // lower-cased account names
	locked   int             // how many members are locked
	lastGood time.Time
	next     time.Time
	running  bool
	rerun    bool
}

type monitorState struct {
	mu       sync.Mutex
	accounts map[string]*watchedAccount
	groups   map[probeGroupKey]*probeGroup
	feeds    map[feedKey]int // how many groups use each feed
	subs     map[feedKey]context.CancelFunc
	probes   int64 // group probes made, for tests and metrics
}

func (s *Service) mon() *monitorState {
	s.monOnce.Do(func() {
		s.monState = &monitorState{accounts: map[string]*watchedAccount{}, groups: map[probeGroupKey]*probeGroup{},
			feeds: map[feedKey]int{}, subs: map[feedKey]context.CancelFunc{}}
	})
	return s.monState
}

func (s *Service) probeRate() float64 {
	if s.ProbeRate > 0 {
		return s.ProbeRate
	}
	return 20
}

// cycle is how long the safety net takes to probe every group once.
func (s *Service) cycle(groups int) time.Duration {
	return max(s.probeInterval(), time.Duration(float64(groups)/s.probeRate()*float64(time.Second)))
}

// watch puts a (or its new state) in the monitor's index.
func (s *Service) watch(a *Account) {
	if a.Encryption.KeySource != KeySourceKeyVault || a.Key.Wrapped.KeySource != KeySourceKeyVault {
		s.unwatch(a.Name)
		return
	}
	kid, err := ParseKeyID(a.Key.Wrapped.KeyID)
	if err != nil {
		s.unwatch(a.Name)
		return
	}
	enc, _ := ParseKeyID(a.Encryption.KeyIdentifier)
	w := &watchedAccount{
		group:       probeGroupKey{strings.ToLower(kid.String()), strings.ToLower(a.Key.Wrapped.Identity)},
		feed:        feedKey{kid.VaultURL, strings.ToLower(a.Key.Wrapped.Identity)},
		keyName:     strings.ToLower(kid.Name),
		locked:      a.Key.State == KeyInaccessible,
		versionless: enc.Name != "" && enc.Version == "",
	}
	m := s.mon()
	m.mu.Lock()
	defer m.mu.Unlock()
	name := strings.ToLower(a.Name)
	m.remove(name)
	m.accounts[name] = w
	g := m.groups[w.group]
	if g == nil {
		now := s.now()
		g = &probeGroup{key: w.group, feed: w.feed, keyName: w.keyName, members: map[string]bool{}, lastGood: now}
		g.next = now.Add(time.Duration(rand.Int64N(int64(s.cycle(len(m.groups) + 1)))))
		m.groups[w.group] = g
		m.feeds[w.feed]++
	}
	g.members[name] = true
	if w.locked {
		g.locked++
		if soon := s.now().Add(s.probeInterval()); soon.Before(g.next) {
			g.next = soon
		}
	}
}

// unwatch removes an account from the monitor's index.
func (s *Service) unwatch(name string) {
	m := s.mon()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.remove(strings.ToLower(name))
}

func (m *monitorState) remove(name string) {
	w := m.accounts[name]
	if w == nil {
		return
	}
	delete(m.accounts, name)
	g := m.groups[w.group]
	if g == nil {
		return
	}
	delete(g.members, name)
	if w.locked {
		g.locked--
	}
	if len(g.members) == 0 {
		delete(m.groups, w.group)
		if m.feeds[w.feed]--; m.feeds[w.feed] <= 0 {
			delete(m.feeds, w.feed)
		}
	}
}

// reindex rebuilds the index from the store (at start, and now and then in
// case an account changed behind the service's back).
func (s *Service) reindex(ctx context.Context) error {
	as, err := s.Accounts.ListAccounts(ctx, "", "")
	if err != nil {
		return err
	}
	seen := map[string]bool{}
	for _, a := range as {
		seen[strings.ToLower(a.Name)] = true
		s.watch(a)
	}
	m := s.mon()
	m.mu.Lock()
	defer m.mu.Unlock()
	for name := range m.accounts {
		if !seen[name] {
			m.remove(name)
		}
	}
	return nil
}

// RunMonitor keeps every customer-managed key under watch until ctx is
// done: it follows the change feed of each vault and identity in use and
// runs the safety net of periodic probes (see ProbeInterval, ProbeRate).
// A definite refusal locks an account at once; a vault outage locks it once
// the last good probe is older than GracePeriod; a good probe of a locked
// account unlocks it. For a versionless key identifier, a newer key version
// is picked up by rewrapping the DEK with it.
func (s *Service) RunMonitor(ctx context.Context, log *slog.Logger) {
	if log == nil {
		log = slog.Default()
	}
	if err := s.reindex(ctx); err != nil {
		log.Warn("key monitor: list accounts", "err", err)
	}
	const tick = 100 * time.Millisecond
	t := time.NewTicker(tick)
	defer t.Stop()
	sem := make(chan struct{}, 8)
	tokens, last, lastIndex := 1.0, s.now(), s.now()
	for {
		select {
		case <-ctx.Done():
			m := s.mon()
			m.mu.Lock()
			for k, cancel := range m.subs {
				cancel()
				delete(m.subs, k)
			}
			m.mu.Unlock()
			return
		case <-t.C:
		}
		now := s.now()
		if now.Sub(lastIndex) > time.Minute {
			lastIndex = now
			if err := s.reindex(ctx); err != nil {
				log.Warn("key monitor: list accounts", "err", err)
			}
		}
		rate := s.probeRate()
		tokens = min(tokens+rate*now.Sub(last).Seconds(), max(rate, 1))
		last = now
		s.syncFeeds(ctx, log)
		for _, g := range s.dueGroups(now, int(tokens)) {
			tokens--
			s.startGroupProbe(ctx, log, g, sem)
		}
	}
}

// dueGroups returns up to n groups whose safety-net probe is due, the most
// overdue first, and schedules their next one.
func (s *Service) dueGroups(now time.Time, n int) []*probeGroup {
	if n <= 0 {
		return nil
	}
	m := s.mon()
	m.mu.Lock()
	defer m.mu.Unlock()
	var due []*probeGroup
	for _, g := range m.groups {
		if !g.next.After(now) {
			due = append(due, g)
		}
	}
	slices.SortFunc(due, func(a, b *probeGroup) int { return a.next.Compare(b.next) })
	due = due[:min(n, len(due))]
	cycle := s.cycle(len(m.groups))
	for _, g := range due {
		if g.locked > 0 {
			g.next = now.Add(s.probeInterval())
		} else {
			g.next = now.Add(cycle)
		}
	}
	return due
}

// startGroupProbe probes g in the background, or marks it to be probed
// again when a probe of it is already running (a change may have come after
// that probe's call to the vault).
func (s *Service) startGroupProbe(ctx context.Context, log *slog.Logger, g *probeGroup, sem chan struct{}) {
	m := s.mon()
	m.mu.Lock()
	if g.running {
		g.rerun = true
		m.mu.Unlock()
		return
	}
	g.running = true
	m.probes++
	m.mu.Unlock()
	go func() {
		for {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				m.mu.Lock()
				g.running = false
				m.mu.Unlock()
				return
			}
			if s.Fence != nil {
				if err := s.Fence(ctx); err != nil {
					<-sem
					m.mu.Lock()
					g.running, g.rerun = false, false
					m.mu.Unlock()
					return
				}
			}
			s.probeGroup(ctx, log, g)
			<-sem
			m.mu.Lock()
			if !g.rerun {
				g.running = false
				m.mu.Unlock()
				return
			}
			g.rerun = false
			m.probes++
			m.mu.Unlock()
		}
	}()
}

// probeGroup probes one member of g through the vault and applies the
// answer to the others.
func (s *Service) probeGroup(ctx context.Context, log *slog.Logger, g *probeGroup) {
	m := s.mon()
	m.mu.Lock()
	var members []string
	rep := ""
	for name := range g.members {
		members = append(members, name)
		if w := m.accounts[name]; rep == "" && w != nil && !w.locked {
			rep = name
		}
	}
	lastGood := g.lastGood
	m.mu.Unlock()
	if len(members) == 0 {
		return
	}
	slices.Sort(members)
	if rep == "" {
		rep = members[0]
	}
	out, err := s.probe(ctx, rep, lastGood)
	if err != nil {
		log.Warn("key monitor: probe", "account", rep, "err", err)
		return
	}
	if out.ok {
		m.mu.Lock()
		g.lastGood = s.now()
		m.mu.Unlock()
	}
	for _, name := range members {
		if name == rep {
			continue
		}
		m.mu.Lock()
		w := m.accounts[name]
		m.mu.Unlock()
		if w == nil || w.group != g.key {
			continue // moved to another group meanwhile
		}
		var err error
		switch {
		case out.ok && (w.locked || out.followed && w.versionless):
			_, err = s.probe(ctx, name, lastGood)
		case out.refused != "":
			err = s.lockAccount(ctx, name, out.refused)
		case out.outage != "" && !w.locked && s.now().Sub(lastGood) > s.gracePeriod():
			err = s.lockAccount(ctx, name, fmt.Sprintf("%s for longer than the grace period of %s", out.outage, s.gracePeriod()))
		}
		if err != nil {
			log.Warn("key monitor: probe", "account", name, "err", err)
		}
	}
}

// lockAccount locks account name for reason (a refusal its group's probe
// met), unless its key setting changed meanwhile.
func (s *Service) lockAccount(ctx context.Context, name, reason string) error {
	mu := s.accountLock(name)
	mu.Lock()
	defer mu.Unlock()
	a, err := s.Accounts.Account(ctx, name)
	if err != nil {
		return err
	}
	if a.Encryption.KeySource == KeySourceKeyVault && a.Key.State != KeyInaccessible {
		s.lock(ctx, a, reason)
	}
	return nil
}

// reprobe probes at once the groups of feed f (of key name keyName only,
// if it is not "").
func (s *Service) reprobe(ctx context.Context, log *slog.Logger, f feedKey, keyName string, sem chan struct{}) {
	m := s.mon()
	m.mu.Lock()
	var gs []*probeGroup
	for _, g := range m.groups {
		if g.feed == f && (keyName == "" || g.keyName == strings.ToLower(keyName)) {
			gs = append(gs, g)
		}
	}
	m.mu.Unlock()
	slices.SortFunc(gs, func(a, b *probeGroup) int { return cmp.Compare(b.locked, a.locked) })
	for _, g := range gs {
		s.startGroupProbe(ctx, log, g, sem)
	}
}

// syncFeeds starts a subscription for each vault and identity in use and
// stops those no longer needed.
func (s *Service) syncFeeds(ctx context.Context, log *slog.Logger) {
	feed, ok := s.Vault.(ChangeFeed)
	if !ok {
		return
	}
	m := s.mon()
	m.mu.Lock()
	defer m.mu.Unlock()
	for f, cancel := range m.subs {
		if m.feeds[f] == 0 {
			cancel()
			delete(m.subs, f)
		}
	}
	for f := range m.feeds {
		// External vaults have no change feed: probes alone watch them.
		if m.subs[f] == nil && s.ownVault(f.vaultURL) {
			sctx, cancel := context.WithCancel(ctx)
			m.subs[f] = cancel
			go s.follow(sctx, log, feed, f)
		}
	}
}

// feedWait is how long one change feed request waits for a change.
const feedWait = 25 * time.Second

// follow reads the change feed of one vault for one identity until ctx is
// done, and re-probes what each change touches.
func (s *Service) follow(ctx context.Context, log *slog.Logger, feed ChangeFeed, f feedKey) {
	sem := make(chan struct{}, 4)
	cursor := ""
	backoff := time.Second
	refused := false
	for ctx.Err() == nil {
		page, err := feed.Changes(ctx, f.vaultURL, f.identity, cursor, feedWait)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			var ke *KeyError
			wait := backoff
			if errors.As(err, &ke) && ke.Definite {
				// Refused: the identity lost its access to the vault, the
				// vault is gone, or the identity is. Its accounts' probes
				// decide. The feed is asked again every second, cheaply, so
				// that a restored access is heard of at once.
				if !refused {
					s.reprobe(ctx, log, f, "", sem)
				}
				refused, cursor, wait = true, "", time.Second
			} else {
				backoff = min(2*backoff, 30*time.Second)
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
			continue
		}
		if refused {
			// Access is back, or changed: what happened while the feed
			// refused is unknown.
			refused = false
			s.reprobe(ctx, log, f, "", sem)
		}
		backoff = time.Second
		if cursor != "" && page.Missed {
			s.reprobe(ctx, log, f, "", sem)
		}
		if cursor != "" {
			all := false
			keys := map[string]bool{}
			for _, c := range page.Changes {
				if c.Key == "" {
					all = true
				}
				keys[strings.ToLower(c.Key)] = true
			}
			if all {
				s.reprobe(ctx, log, f, "", sem)
			} else {
				for k := range keys {
					s.reprobe(ctx, log, f, k, sem)
				}
			}
		}
		cursor = page.Cursor
	}
}

// ProbeAll probes every account with a customer-managed key once, group by
// group, and waits for the probes.
func (s *Service) ProbeAll(ctx context.Context, log *slog.Logger) {
	if log == nil {
		log = slog.Default()
	}
	if err := s.reindex(ctx); err != nil {
		log.Warn("key monitor: list accounts", "err", err)
		return
	}
	m := s.mon()
	m.mu.Lock()
	gs := make([]*probeGroup, 0, len(m.groups))
	for _, g := range m.groups {
		gs = append(gs, g)
	}
	m.mu.Unlock()
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for _, g := range gs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			s.probeGroup(ctx, log, g)
		}()
	}
	wg.Wait()
}

// probeOutcome is what a probe of one account found.
type probeOutcome struct {
	ok       bool
	followed bool   // the account moved to a newer key version
	refused  string // the reason of a definite refusal
	outage   string // the reason of an outage
}

// Probe checks one account's customer-managed key now and locks, unlocks or
// follows a new key version as needed. It returns only unexpected errors.
func (s *Service) Probe(ctx context.Context, name string) error {
	_, err := s.probe(ctx, name, time.Time{})
	return err
}

// probe is Probe; lastGood is the last good probe of the account's group,
// which counts for the grace period as the account's own does.
func (s *Service) probe(ctx context.Context, name string, lastGood time.Time) (probeOutcome, error) {
	mu := s.accountLock(name)
	mu.Lock()
	defer mu.Unlock()
	a, err := s.Accounts.Account(ctx, name)
	if err != nil {
		if custody.IsNotFound(err) {
			s.unwatch(name)
		}
		return probeOutcome{}, err
	}
	defer func() { s.watch(a) }()
	if a.Encryption.KeySource != KeySourceKeyVault {
		return probeOutcome{}, nil
	}
	dek, err := s.unwrap(ctx, a)
	if err != nil {
		var ke *KeyError
		if !errors.As(err, &ke) {
			return probeOutcome{}, err
		}
		if ke.Definite {
			s.lock(ctx, a, ke.Reason)
			return probeOutcome{refused: ke.Reason}, nil
		}
		if a.Key.State == KeyAvailable && s.now().Sub(later(a.Key.LastProbe, lastGood)) > s.gracePeriod() {
			s.lock(ctx, a, fmt.Sprintf("%s for longer than the grace period of %s", ke.Reason, s.gracePeriod()))
		}
		return probeOutcome{outage: ke.Reason}, nil
	}
	now := s.now().UTC()
	k := a.Key
	unlocked := k.State != KeyAvailable
	if unlocked {
		k.State, k.Reason, k.Since = KeyAvailable, "", now
	}
	k.LastProbe = now
	if err := s.Accounts.UpdateKeyState(ctx, a.Name, k); err != nil {
		return probeOutcome{}, err
	}
	a.Key = k
	s.cacheDEK(a.Name, dek)
	if unlocked {
		s.notifyKeyState(a.Name, false)
	}
	out := probeOutcome{ok: true}

	// A versionless identifier follows the key's latest version.
	id, err := ParseKeyID(a.Encryption.KeyIdentifier)
	if err != nil || id.Version != "" {
		return out, nil
	}
	vc, err := s.vault(id)
	if err != nil {
		return out, nil
	}
	info, err := vc.GetKey(ctx, id, a.Key.Wrapped.Identity)
	if err != nil {
		return out, nil // the next unwrap decides about locking
	}
	cur, _ := ParseKeyID(a.Key.Wrapped.KeyID)
	if info.KID.Version == "" || info.KID.Version == cur.Version {
		return out, nil
	}
	w, old, err := rewrap(dek, func(raw []byte) (WrappedDEK, error) {
		return s.wrapWithCustomerKey(ctx, a, info.KID.String(), raw)
	})
	if err != nil {
		return out, fmt.Errorf("follow new key version %s: %w", info.KID, err)
	}
	next := *a
	prev := a.Key.Wrapped.KeyID
	next.Key.Wrapped, next.Key.Old = w, old
	next.UpdatedAt = now
	if err := s.Accounts.UpdateAccount(ctx, &next, prev); err != nil {
		return out, err
	}
	*a = next
	out.followed = true
	return out, nil
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
