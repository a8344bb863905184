package keyvault

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"
)

// This file is the key vault's background work: the audit writer, and the
// sweep that purges soft-deleted keys and vaults whose retention has ended
// and rotates keys whose rotation policy says they are due.

// AuditBatcher is implemented by key stores that can append several audit
// records in one transaction; the audit writer uses it when present.
type AuditBatcher interface {
	AppendAuditBatch(ctx context.Context, rs []*AuditRecord) error
}

// auditQueue batches audit records: one writer stores every record queued
// while it was storing the previous batch, in one transaction (a group
// commit). A call waits until its own record is stored before it answers, so
// an answered call always has its record: a crash (the process killed at any
// point) loses no record of an answered call; only calls that had not been
// answered yet may lose theirs. (The store's own durability applies beyond
// that: the embedded SQLite database, with synchronous=NORMAL, may lose its
// last commits on a power loss, not on a process crash.) The queue is
// bounded: when it is full, callers wait for room rather than drop records.
// While no writer runs (before Run, after it returns), records are written
// synchronously.
type auditQueue struct {
	mu      sync.RWMutex
	running bool
	ch      chan auditItem
	done    chan struct{}
}

type auditItem struct {
	rec *AuditRecord
	// stored receives the outcome of storing rec (nil once stored).
	stored chan error
	flush  chan struct{} // set for a flush barrier instead of a record
}

const (
	auditQueueSize = 8192
	auditBatchMax  = 512
)

// audit appends r to the audit log and returns once it is stored, or with
// the error that kept it from being stored (the record is then in the
// server's log at error level).
func (s *Service) audit(r *AuditRecord) error {
	q := &s.state().audit
	q.mu.RLock()
	if q.running {
		stored := make(chan error, 1)
		q.ch <- auditItem{rec: r, stored: stored}
		q.mu.RUnlock()
		return <-stored
	}
	q.mu.RUnlock()
	return s.writeAudit([]*AuditRecord{r})
}

// FlushAudit waits until every audit record appended so far is stored.
func (s *Service) FlushAudit() {
	q := &s.state().audit
	q.mu.RLock()
	if !q.running {
		q.mu.RUnlock()
		return
	}
	done := make(chan struct{})
	q.ch <- auditItem{flush: done}
	q.mu.RUnlock()
	<-done
}

// ListAudit returns audit records, most recent first, after storing pending
// ones.
func (s *Service) ListAudit(ctx context.Context, f AuditFilter) ([]*AuditRecord, error) {
	s.FlushAudit()
	f.VaultName = strings.ToLower(f.VaultName)
	return s.Keys.ListAudit(ctx, f)
}

func (s *Service) startAudit() {
	q := &s.state().audit
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.running {
		return
	}
	q.running = true
	q.ch = make(chan auditItem, auditQueueSize)
	q.done = make(chan struct{})
	go s.auditWriter(q.ch, q.done)
}

// stopAudit stops the writer after it has stored everything queued.
func (s *Service) stopAudit() {
	q := &s.state().audit
	q.mu.Lock()
	if !q.running {
		q.mu.Unlock()
		return
	}
	q.running = false
	close(q.ch)
	done := q.done
	q.mu.Unlock()
	<-done
}

func (s *Service) auditWriter(ch chan auditItem, done chan struct{}) {
	defer close(done)
	batch := make([]*AuditRecord, 0, auditBatchMax)
	var waiting []chan error
	var flushes []chan struct{}
	add := func(it auditItem) {
		if it.flush != nil {
			flushes = append(flushes, it.flush)
			return
		}
		batch = append(batch, it.rec)
		waiting = append(waiting, it.stored)
	}
	for it := range ch {
		add(it)
	more:
		for len(batch) < auditBatchMax {
			select {
			case it, ok := <-ch:
				if !ok {
					break more
				}
				add(it)
			default:
				break more
			}
		}
		var err error
		if len(batch) > 0 {
			err = s.writeAudit(batch)
		}
		for _, w := range waiting {
			w <- err
		}
		for _, f := range flushes {
			close(f)
		}
		clear(batch)
		clear(waiting)
		batch, waiting, flushes = batch[:0], waiting[:0], flushes[:0]
	}
}

// writeAudit stores rs, retrying a few times; records that still cannot be
// stored are written to the log at error level, never dropped silently, and
// the error is returned.
func (s *Service) writeAudit(rs []*AuditRecord) error {
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		if attempt > 0 {
			time.Sleep(time.Duration(attempt*attempt) * 50 * time.Millisecond)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if b, ok := s.Keys.(AuditBatcher); ok {
			err = b.AppendAuditBatch(ctx, rs)
		} else {
			err = nil
			for len(rs) > 0 && err == nil {
				if err = s.Keys.AppendAudit(ctx, rs[0]); err == nil {
					rs = rs[1:]
				}
			}
		}
		cancel()
		if err == nil {
			return nil
		}
	}
	for _, r := range rs {
		s.logger().Error("audit record could not be stored", "err", err, "time", r.Time, "caller_oid", r.CallerOID,
			"vault", r.VaultName, "key", r.KeyName, "version", r.Version, "operation", r.Operation, "outcome", r.Outcome)
	}
	return err
}

// Run does the key vault's background work until ctx is done: it writes
// audit records in batches, and every interval runs Sweep. Before returning
// it stores every queued audit record.
func (s *Service) Run(ctx context.Context, interval time.Duration) {
	s.startAudit()
	defer s.stopAudit()
	if interval <= 0 {
		interval = time.Minute
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if s.Fence != nil {
				if err := s.Fence(ctx); err != nil {
					continue
				}
			}
			if err := s.Sweep(ctx); err != nil && ctx.Err() == nil {
				s.logger().Error("key vault sweep failed", "err", err)
			}
		}
	}
}

// Sweep purges soft-deleted keys and vaults whose scheduled purge date has
// passed, deletes audit records older than AuditRetention, and rotates keys
// whose rotation policy makes them due.
func (s *Service) Sweep(ctx context.Context) error {
	now := s.now()
	var errs []error
	keys, err := s.Keys.KeysDueForPurge(ctx, now)
	errs = append(errs, err)
	for _, k := range keys {
		hv := s.versionsOf(ctx, k.VaultName, k.Name)
		if err := s.Keys.PurgeKey(ctx, k.VaultName, k.Name); err != nil {
			errs = append(errs, err)
			continue
		}
		s.cache().dropKey(k.VaultName, k.Name)
		s.destroyHSMKeys(hv)
		s.publish(k.VaultName, ChangeKeyPurged, k.Name, "")
		s.audit(&AuditRecord{Time: now.UTC(), CallerOID: "system", VaultName: strings.ToLower(k.VaultName), KeyName: k.Name,
			Operation: "KeyPurgeScheduled", Outcome: "success"})
	}
	if _, err := s.PurgeExpiredVaults(ctx); err != nil {
		errs = append(errs, err)
	}
	if s.AuditRetention > 0 {
		if _, err := s.Keys.PurgeAudit(ctx, now.Add(-s.AuditRetention)); err != nil {
			errs = append(errs, err)
		}
	}
	errs = append(errs, s.rotateDue(ctx, now))
	return errors.Join(errs...)
}

// rotateDue rotates every live key whose policy's Rotate action is due:
// timeAfterCreate after the latest version's creation, or timeBeforeExpiry
// before its expiry.
func (s *Service) rotateDue(ctx context.Context, now time.Time) error {
	keys, err := s.Keys.KeysWithRotationPolicy(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, k := range keys {
		if k.RotationPolicy == nil || k.DeletedAt != nil {
			continue
		}
		latest, err := s.Keys.LatestKeyVersion(ctx, k.VaultName, k.Name)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		due, ok := rotationDue(k.RotationPolicy, latest)
		if !ok || now.Before(due) {
			continue
		}
		v, err := s.Vaults.Vault(ctx, k.VaultName)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if v.DeletedAt != nil {
			continue
		}
		c := s.begin(ctx, opSystemRotate, v.Name, k.Name, "")
		_, err = s.rotate(ctx, v, k, latest, c)
		c.end(&err)
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// rotationDue returns when the policy's Rotate action falls due for latest.
func rotationDue(p *RotationPolicy, latest *KeyVersion) (time.Time, bool) {
	for _, a := range p.LifetimeActions {
		if !strings.EqualFold(a.Action, "Rotate") {
			continue
		}
		switch {
		case a.TimeAfterCreate != "":
			d, err := parseDuration(a.TimeAfterCreate)
			if err != nil {
				return time.Time{}, false
			}
			return d.addTo(latest.CreatedAt), true
		case a.TimeBeforeExpiry != "" && latest.Expires != nil:
			d, err := parseDuration(a.TimeBeforeExpiry)
			if err != nil {
				return time.Time{}, false
			}
			return d.subFrom(*latest.Expires), true
		}
	}
	return time.Time{}, false
}
