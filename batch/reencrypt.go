package batch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"custody"
	"custody/rm"
)

// Re-encryption.
//
// A key change rewraps the account's DEK and never touches the data. When
// the DEK itself may be exposed, Reencrypt creates a new DEK generation
// (wrapped by the account's KEK like the current one) and a background walk
// re-seals every sealed value of the account under it:
//
//   - Reencrypt stores the new generation as current and keeps the previous
//     one, wrapped, in the account row (AccountKey.Old). From then on every
//     write seals with the new generation, and DEK.Open opens values of
//     either generation, so reads and writes go on during the walk.
//   - RunReencryption walks each Resealer (the data store's jobs, tasks and
//     certificates; compute's pools) in key order, in short transactions of
//     ReencryptBatch records, selecting only records that still hold a
//     value of the old generation. After each batch the cursor and the
//     counts are stored in the account row, so a restart resumes where the
//     last stored cursor points (a batch done but not yet recorded is
//     skipped on resume: its records no longer carry the old generation).
//   - A walk that ends having rewritten something starts another one, to
//     catch values written back by requests that read a record before it
//     was re-sealed. When a whole walk finds nothing, ReencryptSettle has
//     passed since the last rewrite and a final count finds no value of the
//     old generation, the old DEK is deleted from the account row and from
//     memory: nothing can open old ciphertexts any more.
//   - A locked account (key inaccessible) pauses the walk; it resumes when
//     the monitor unlocks the account. A key change during the walk rewraps
//     both generations.

// Re-encryption states.
const (
	ReencryptionInProgress = "InProgress"
	ReencryptionSucceeded  = "Succeeded"
)

// Reencryption is the state of an account's re-encryption, stored with
// the account.
type Reencryption struct {
	Status string `json:"status"`
	// OperationID is the long-running operation (rm.Operation) that
	// reports it.
	OperationID string `json:"operationId,omitempty"`
	// From and To are the old and the new DEK generation.
	From uint32 `json:"from"`
	To   uint32 `json:"to"`
	// RecordsTotal is how many records held a value of the old generation
	// when it started (more if records were written back during the walk);
	// RecordsDone how many have been re-sealed.
	RecordsDone  int64     `json:"recordsDone"`
	RecordsTotal int64     `json:"recordsTotal"`
	StartTime    time.Time `json:"startTime"`
	EndTime      time.Time `json:"endTime,omitempty"`
	// Cursor is where the walk resumes: the index of the resealer and its
	// own cursor ("2|task:job/7").
	Cursor string `json:"cursor,omitempty"`
	// Pass is the number of the current walk over the records (from 1);
	// PassResealed how many records it has rewritten so far.
	Pass         int   `json:"pass"`
	PassResealed int64 `json:"passResealed"`
	// LastResealed is when a record was last rewritten.
	LastResealed time.Time `json:"lastResealed,omitempty"`
	// Error is the last error the walk met (it is retried), empty if none.
	Error string `json:"error,omitempty"`
}

// EstimatedEnd estimates when an in-progress re-encryption ends from its
// rate so far; zero when there is nothing to go by yet.
func (r *Reencryption) EstimatedEnd(now time.Time) time.Time {
	if r.Status != ReencryptionInProgress {
		return r.EndTime
	}
	if r.RecordsDone <= 0 || r.RecordsTotal <= 0 {
		return time.Time{}
	}
	elapsed := now.Sub(r.StartTime)
	left := r.RecordsTotal - r.RecordsDone
	if left < 0 {
		left = 0
	}
	return now.Add(time.Duration(float64(elapsed) * float64(left) / float64(r.RecordsDone)))
}

// SealedRecord is one stored record as a re-encryption walk sees it: its
// sealed values, each with the Ref it was sealed for. A nil value is an
// absent optional field.
type SealedRecord struct {
	Refs   []Ref
	Values [][]byte
}

// Resealer is a table of records sealed with account DEKs, which a
// re-encryption walks. The batch data store (jobs, tasks, certificates)
// and compute's pool store implement it.
type Resealer interface {
	// CountSealedUnder counts the account's records that hold a value
	// sealed under DEK generation gen.
	CountSealedUnder(ctx context.Context, account string, gen uint32) (int64, error)
	// ResealUnder reads, in one transaction, up to limit of the account's
	// records after cursor (in the resealer's key order; "" is the start)
	// that hold a value sealed under generation gen, calls fn on each, and
	// stores the values fn leaves in the record in place of those read; a
	// record changed since it was read is left alone. It returns the cursor
	// of the last record read ("" when none was left) and how many records
	// it rewrote.
	ResealUnder(ctx context.Context, account string, gen uint32, cursor string, limit int, fn func(*SealedRecord) error) (next string, n int, err error)
}

func (s *Service) reencryptBatch() int {
	if s.ReencryptBatch > 0 {
		return s.ReencryptBatch
	}
	return 500
}

func (s *Service) reencryptSettle() time.Duration {
	if s.ReencryptSettle > 0 {
		return s.ReencryptSettle
	}
	return 3 * time.Second
}

func reencryptionInProgress(a *Account) error {
	r := a.Reencryption
	return custody.Errorf(custody.KindConflict, "ReencryptionInProgress",
		"Batch account %q is already being re-encrypted (started %s, %d of %d records done); only one re-encryption runs at a time. Wait for it to finish (custody batch account show -n %s shows properties.reencryption).",
		a.Name, r.StartTime.UTC().Format(time.RFC3339), r.RecordsDone, r.RecordsTotal, a.Name)
}

// Reencrypt starts the re-encryption of an account's data under a new DEK
// generation and returns the account with its new state; the records are
// re-sealed in the background (RunReencryption). The new DEK is wrapped
// like the current one: by the platform key ring, or by the key version in
// the customer's vault that wraps the current DEK. Errors: a locked account
// (AccountKeyInaccessible), one already being re-encrypted
// (ReencryptionInProgress), a key the vault refuses.
func (s *Service) Reencrypt(ctx context.Context, name string) (*Account, error) {
	if len(s.Resealers) == 0 {
		return nil, custody.Errorf(custody.KindInvalid, "ReencryptionNotAvailable", "This server cannot re-encrypt batch account data: no record store is configured.")
	}
	mu := s.accountLock(name)
	mu.Lock()
	defer mu.Unlock()
	a, err := s.Accounts.Account(ctx, name)
	if err != nil {
		return nil, err
	}
	if a.Key.State == KeyInaccessible {
		return nil, lockedError(a)
	}
	if a.Key.Old != nil || (a.Reencryption != nil && a.Reencryption.Status == ReencryptionInProgress) {
		return nil, reencryptionInProgress(a)
	}
	cur, err := s.unwrap(ctx, a)
	if err != nil {
		var ke *KeyError
		if errors.As(err, &ke) {
			if ke.Definite {
				s.lock(ctx, a, ke.Reason)
				return nil, lockedError(a)
			}
			return nil, custody.Errorf(custody.KindUnavailable, "KeyVaultUnavailable", "The key vault of account %q cannot be reached right now (%s); retry shortly.", a.Name, ke.Reason)
		}
		return nil, err
	}
	raw := GenerateDEKBytes()
	var w WrappedDEK
	switch a.Key.Wrapped.KeySource {
	case KeySourceBatch:
		if w, err = s.Platform.Wrap(ctx, a.UID, raw); err != nil {
			return nil, err
		}
	case KeySourceKeyVault:
		// The key version that wraps the current DEK wraps the new one.
		if w, err = s.wrapWithCustomerKey(ctx, a, a.Key.Wrapped.KeyID, raw); err != nil {
			return nil, err
		}
	default:
		return nil, custody.Internal(nil, "account %s: unknown key source %q", a.Name, a.Key.Wrapped.KeySource)
	}
	var total int64
	for _, r := range s.Resealers {
		n, err := r.CountSealedUnder(ctx, a.Name, a.Key.Generation)
		if err != nil {
			return nil, err
		}
		total += n
	}
	var op *rm.Operation
	if s.RM != nil {
		if op, err = s.RM.BeginOperation(ctx, a.ID, "reencrypt"); err != nil {
			return nil, err
		}
	}
	now := s.now().UTC()
	prevGen, prevKeyID := a.Key.Generation, a.Key.Wrapped.KeyID
	next := *a
	next.Key.Old = &OldDEK{Generation: prevGen, Wrapped: a.Key.Wrapped}
	next.Key.Generation, next.Key.Wrapped = prevGen+1, w
	next.Reencryption = &Reencryption{Status: ReencryptionInProgress, From: prevGen, To: prevGen + 1,
		RecordsTotal: total, StartTime: now, Pass: 1}
	if op != nil {
		next.Reencryption.OperationID = op.ID
	}
	next.UpdatedAt = now
	if err := s.Accounts.BeginReencryption(ctx, &next, prevGen, prevKeyID); err != nil {
		if op != nil {
			_ = s.RM.FinishOperation(context.WithoutCancel(ctx), op, err)
		}
		return nil, err
	}
	dek, err := NewDEK(raw, next.Key.Generation)
	if err != nil {
		return nil, err
	}
	s.cacheDEK(a.Name, dek.WithOld(cur))
	s.kickReencryption()
	return &next, nil
}

func (s *Service) kickReencryption() {
	s.mu.Lock()
	if s.reencKick == nil {
		s.reencKick = make(chan struct{}, 1)
	}
	ch := s.reencKick
	s.mu.Unlock()
	select {
	case ch <- struct{}{}:
	default:
	}
}

// RunReencryption re-seals the records of every account with a
// re-encryption in progress until ctx is done: at once after Reencrypt or
// an unlock, and every second while one is in progress. Accounts are found
// by listing them all at start, when kicked and every minute; between
// lists only those known to be in progress are read. Only the active
// replica runs it.
func (s *Service) RunReencryption(ctx context.Context, log *slog.Logger) {
	if log == nil {
		log = slog.Default()
	}
	s.mu.Lock()
	if s.reencKick == nil {
		s.reencKick = make(chan struct{}, 1)
	}
	kick := s.reencKick
	s.mu.Unlock()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	var known []string // accounts with a re-encryption in progress
	list, lastList := true, time.Time{}
	for {
		if s.Fence == nil || s.Fence(ctx) == nil {
			if list || time.Since(lastList) > time.Minute {
				if names, err := s.reencryptionsInProgress(ctx); err == nil {
					known, lastList = names, time.Now()
				} else if ctx.Err() == nil {
					log.Warn("re-encryption: list accounts", "err", err)
				}
			}
			known = s.reencryptAll(ctx, log, known)
		}
		list = false
		select {
		case <-ctx.Done():
			return
		case <-kick:
			list = true
		case <-t.C:
		}
	}
}

// reencryptionsInProgress lists the accounts with a re-encryption in
// progress.
func (s *Service) reencryptionsInProgress(ctx context.Context) ([]string, error) {
	as, err := s.Accounts.ListAccounts(ctx, "", "")
	if err != nil {
		return nil, err
	}
	var out []string
	for _, a := range as {
		if a.Reencryption != nil && a.Reencryption.Status == ReencryptionInProgress {
			out = append(out, a.Name)
		}
	}
	return out, nil
}

// reencryptAll advances the re-encryption of each named account and
// returns those still in progress.
func (s *Service) reencryptAll(ctx context.Context, log *slog.Logger, names []string) []string {
	var still []string
	for _, name := range names {
		if ctx.Err() != nil {
			return names
		}
		a, err := s.Accounts.Account(ctx, name)
		if err != nil {
			if !custody.IsNotFound(err) {
				still = append(still, name)
			}
			continue
		}
		if a.Reencryption == nil || a.Reencryption.Status != ReencryptionInProgress {
			continue
		}
		still = append(still, name)
		if a.Key.State == KeyInaccessible {
			continue // paused until the unlock
		}
		if err := s.ReencryptStep(ctx, a.Name, 0); err != nil && ctx.Err() == nil {
			log.Warn("re-encryption paused", "account", a.Name, "err", err)
			s.recordReencryptionError(ctx, a.Name, err)
		}
	}
	return still
}

// recordReencryptionError stores the error a walk met, for the account's
// readers.
func (s *Service) recordReencryptionError(ctx context.Context, name string, err error) {
	a, rerr := s.Accounts.Account(ctx, name)
	if rerr != nil || a.Reencryption == nil || a.Reencryption.Status != ReencryptionInProgress {
		return
	}
	msg := custody.ErrorMessage(err)
	if msg == "" {
		msg = err.Error()
	}
	if a.Reencryption.Error == msg {
		return
	}
	r := *a.Reencryption
	r.Error = msg
	_ = s.Accounts.UpdateReencryption(ctx, a.Name, a.UID, &r)
}

// ReencryptStep runs the account's re-encryption for at most maxBatches
// batches (0: until it finishes), and returns early without error when it
// is not in progress. A locked account answers AccountKeyInaccessible; the
// walk resumes from its stored cursor after the unlock.
func (s *Service) ReencryptStep(ctx context.Context, name string, maxBatches int) error {
	for i := 0; maxBatches == 0 || i < maxBatches; i++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		done, err := s.reencryptBatchOnce(ctx, name)
		if err != nil || done {
			return err
		}
	}
	return nil
}

// reencryptBatchOnce re-seals one batch; done is true when there is
// nothing more to do now (finished, not in progress, or waiting to settle).
func (s *Service) reencryptBatchOnce(ctx context.Context, name string) (done bool, err error) {
	a, dek, err := s.DEK(ctx, name)
	if err != nil {
		if custody.IsNotFound(err) {
			return true, nil
		}
		return true, err
	}
	r := a.Reencryption
	if r == nil || r.Status != ReencryptionInProgress {
		return true, nil
	}
	if r.To != a.Key.Generation || a.Key.Old == nil || a.Key.Old.Generation != r.From || dek.OldGeneration() != r.From {
		return true, custody.Internal(nil, "account %s: re-encryption from generation %d to %d does not match the account's DEK generations", a.Name, r.From, r.To)
	}
	idx, inner := parseReencryptCursor(r.Cursor)
	if idx >= len(s.Resealers) {
		// A walk has ended.
		now := s.now().UTC()
		if r.PassResealed > 0 {
			next := *r
			next.Pass, next.PassResealed, next.Cursor, next.Error = r.Pass+1, 0, "", ""
			return false, s.Accounts.UpdateReencryption(ctx, a.Name, a.UID, &next)
		}
		since := r.LastResealed
		if since.Before(r.StartTime) {
			since = r.StartTime
		}
		if now.Sub(since) < s.reencryptSettle() {
			// Requests that read a record before it was re-sealed may
			// still write it back: wait (the next round), then count.
			return true, nil
		}
		return true, s.finishReencryption(ctx, a.Name, r)
	}
	uid := a.UID
	next, n, err := s.Resealers[idx].ResealUnder(ctx, a.Name, r.From, inner, s.reencryptBatch(), func(rec *SealedRecord) error {
		for i, v := range rec.Values {
			if g, ok := SealedGeneration(v); !ok || g != r.From {
				continue
			}
			pt, err := dek.Open(uid, rec.Refs[i], v)
			if err != nil {
				return custody.Internal(err, "The stored %s %s field %s of account %q could not be opened with the account's old key; the record was altered or moved.", rec.Refs[i].Kind, rec.Refs[i].ID, rec.Refs[i].Field, a.Name)
			}
			rec.Values[i] = dek.Seal(uid, rec.Refs[i], pt)
		}
		return nil
	})
	if err != nil {
		return true, err
	}
	st := *r
	st.Error = ""
	st.RecordsDone += int64(n)
	st.PassResealed += int64(n)
	if st.RecordsDone > st.RecordsTotal {
		st.RecordsTotal = st.RecordsDone
	}
	if n > 0 {
		st.LastResealed = s.now().UTC()
	}
	if next == "" {
		idx, next = idx+1, ""
	}
	st.Cursor = strconv.Itoa(idx) + "|" + next
	return false, s.Accounts.UpdateReencryption(ctx, a.Name, a.UID, &st)
}

func parseReencryptCursor(c string) (int, string) {
	if c == "" {
		return 0, ""
	}
	i, rest, _ := strings.Cut(c, "|")
	n, err := strconv.Atoi(i)
	if err != nil || n < 0 {
		return 0, ""
	}
	return n, rest
}

// finishReencryption deletes the old DEK generation once no record holds a
// value sealed under it, and reports the operation done.
func (s *Service) finishReencryption(ctx context.Context, name string, r *Reencryption) error {
	mu := s.accountLock(name)
	mu.Lock()
	defer mu.Unlock()
	a, err := s.Accounts.Account(ctx, name)
	if err != nil {
		return err
	}
	if a.Reencryption == nil || a.Reencryption.Status != ReencryptionInProgress || a.Reencryption.To != r.To {
		return nil
	}
	var left int64
	for _, rs := range s.Resealers {
		n, err := rs.CountSealedUnder(ctx, a.Name, r.From)
		if err != nil {
			return err
		}
		left += n
	}
	if left > 0 {
		next := *a.Reencryption
		next.Pass, next.PassResealed, next.Cursor = next.Pass+1, 0, ""
		return s.Accounts.UpdateReencryption(ctx, a.Name, a.UID, &next)
	}
	fin := *a.Reencryption
	fin.Status, fin.EndTime, fin.Cursor, fin.Error = ReencryptionSucceeded, s.now().UTC(), "", ""
	if fin.RecordsTotal < fin.RecordsDone {
		fin.RecordsTotal = fin.RecordsDone
	}
	fin.RecordsDone = fin.RecordsTotal
	if err := s.Accounts.FinishReencryption(ctx, a.Name, a.UID, &fin); err != nil {
		return err
	}
	if d := s.cachedDEK(a.Name); d != nil {
		s.cacheDEK(a.Name, d.current())
	}
	if s.RM != nil && fin.OperationID != "" {
		op, err := s.RM.Store.Operation(ctx, fin.OperationID)
		if err == nil {
			_ = s.RM.FinishOperation(ctx, op, nil)
		}
	}
	return nil
}

// ReencryptionStatus describes an account's re-encryption for messages.
func (r *Reencryption) String() string {
	return fmt.Sprintf("%s %d/%d", r.Status, r.RecordsDone, r.RecordsTotal)
}
