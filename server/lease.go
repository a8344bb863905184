package server

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"sync"
	"time"

	"custody/sqlstore"
)

// ErrLeaseLost is what Serve returns when this replica was the active one
// and lost its lease: everything only the active runs has been stopped, and
// the process should end (a supervisor restarts it as a standby).
var ErrLeaseLost = errors.New("lost the active replica's lease in PostgreSQL; stopped the scheduler, node channel, local nodes, key monitor and sweeps; restart this replica to rejoin as a standby")

// Lease timings. The lock session tells PostgreSQL to end it when it has
// been idle for leaseIdleTimeout (the active checks it every
// leaseHeartbeat), so a replica that stops talking, frozen or cut off,
// loses the lock within that time even when no TCP reset reaches the
// database; it has stopped by itself long before, when its own checks
// failed (each bounded by leaseCheckTimeout).
const (
	leaseHeartbeat    = time.Second
	leaseCheckTimeout = 2 * time.Second
	leaseIdleTimeout  = 10 * time.Second
	// leaseFresh is how long a successful check answers for the checks
	// that follow it (a scheduling pass per kick would otherwise query the
	// database each time).
	leaseFresh = 100 * time.Millisecond
	// leaseTakeover is how long a new active waits, after taking a lease
	// its former holder did not release, before it acts: by then a former
	// active that is still running has failed a check (one every
	// leaseHeartbeat at most, each failing within leaseCheckTimeout) and
	// stopped.
	leaseTakeover = leaseHeartbeat + leaseCheckTimeout + 500*time.Millisecond
	// leaseSetting is the row of the settings table that says which
	// replica is the active one, at which address, and whether the last
	// active released the lease cleanly (a leaseRecord in JSON).
	leaseSetting = "server.active_lease"
	// leaseEpochSetting is the row of the settings table holding the
	// lease's epoch, a number each new holder raises: the active's task
	// writes are fenced by it (sqlstore.Fence), so none lands once another
	// replica has taken the lease.
	leaseEpochSetting = "server.lease_epoch"
)

// leaseRecord is the value of the leaseSetting row.
type leaseRecord struct {
	// Released says the last active released the lease after it had
	// stopped everything.
	Released bool `json:"released,omitempty"`
	// Address is where the active replica answers (its advertise
	// address), for standbys to forward requests to.
	Address string    `json:"address,omitempty"`
	PID     int       `json:"pid,omitempty"`
	Since   time.Time `json:"since,omitzero"`
	// Epoch is the lease epoch the active raised (leaseEpochSetting).
	Epoch string `json:"epoch,omitempty"`
}

// readLeaseRecord reads the leaseSetting row; a missing or unreadable one
// is the zero record.
func readLeaseRecord(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}) (leaseRecord, bool, error) {
	var v string
	err := q.QueryRowContext(ctx, "SELECT value FROM settings WHERE key = $1", leaseSetting).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return leaseRecord{}, false, nil
	}
	if err != nil {
		return leaseRecord{}, false, err
	}
	var r leaseRecord
	_ = json.Unmarshal([]byte(v), &r)
	return r, true, nil
}

func writeLeaseRecord(ctx context.Context, conn *sql.Conn, r leaseRecord) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	_, err = conn.ExecContext(ctx, upsertLeaseSetting, leaseSetting, string(b))
	return err
}

// lease is the right to be the cluster's active replica: a session-level
// advisory lock of PostgreSQL, held on a connection of its own for as long
// as the replica is active. PostgreSQL releases it when that session ends,
// however it ends.
type lease struct {
	db  *sql.DB
	key int64

	mu     sync.Mutex
	conn   *sql.Conn
	pid    int64
	lastOK time.Time
	// epoch is the lease epoch this replica raised when it took the lease.
	epoch string
}

// advisoryKey is the advisory lock key of a purpose in this database and
// schema (tests run several clusters in one database, one schema each).
func advisoryKey(ctx context.Context, db *sql.DB, purpose string) (int64, error) {
	var dbName, schema string
	if err := db.QueryRowContext(ctx, "SELECT current_database(), current_schema()").Scan(&dbName, &schema); err != nil {
		return 0, err
	}
	h := fnv.New64a()
	fmt.Fprintf(h, "custody\x00%s\x00%s\x00%s", purpose, dbName, schema)
	return int64(h.Sum64()), nil
}

// advisoryLock waits for the advisory lock of purpose and returns its
// release; the first-start bootstrap of replicas runs under one, one
// replica at a time.
func advisoryLock(ctx context.Context, db *sql.DB, purpose string) (func(), error) {
	key, err := advisoryKey(ctx, db, purpose)
	if err != nil {
		return nil, err
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		return nil, err
	}
	if _, err := conn.ExecContext(ctx, "SELECT pg_advisory_lock($1)", key); err != nil {
		discard(conn)
		return nil, fmt.Errorf("wait for the %s lock: %w", purpose, err)
	}
	return func() {
		if _, err := conn.ExecContext(context.Background(), "SELECT pg_advisory_unlock($1)", key); err != nil {
			discard(conn)
			return
		}
		_ = conn.Close()
	}, nil
}

// newLease prepares the lease of the cluster on the database at dsn, on a
// connection pool of its own, so that a busy pool never delays a check.
func newLease(ctx context.Context, dsn string) (*lease, error) {
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		return nil, fmt.Errorf("active lease: %w", err)
	}
	db.SetMaxOpenConns(2)
	key, err := advisoryKey(ctx, db, "active replica")
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("active lease: %w", err)
	}
	return &lease{db: db, key: key}, nil
}

// discard closes a connection for good: a session that held the lock, or
// has the lease's idle timeout, never goes back to the pool.
func discard(c *sql.Conn) {
	_ = c.Raw(func(any) error { return driver.ErrBadConn })
	_ = c.Close()
}

// acquire waits until this replica holds the lease or ctx is done, and
// records the replica's address. It reports whether the former holder
// released the lease cleanly (or there was none).
func (l *lease) acquire(ctx context.Context, address string, onError func(error)) (bool, error) {
	for {
		clean, err := l.tryAcquire(ctx, address)
		if err == nil || ctx.Err() != nil {
			return clean, ctx.Err()
		}
		onError(err)
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-time.After(leaseHeartbeat):
		}
	}
}

const upsertLeaseSetting = `INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value`

func (l *lease) tryAcquire(ctx context.Context, address string) (bool, error) {
	conn, err := l.db.Conn(ctx)
	if err != nil {
		return false, err
	}
	var pid int64
	if err := conn.QueryRowContext(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
		discard(conn)
		return false, err
	}
	// Waiting in pg_advisory_lock is not idle; holding the lock between
	// checks is. (PostgreSQL before 14 has no idle_session_timeout: there a
	// silent partition holds the lock until TCP keepalives end the session.)
	_, _ = conn.ExecContext(ctx, fmt.Sprintf("SET idle_session_timeout = %d", leaseIdleTimeout.Milliseconds()))
	if _, err := conn.ExecContext(ctx, "SELECT pg_advisory_lock($1)", l.key); err != nil {
		discard(conn)
		return false, err
	}
	// Raising the epoch waits for fenced writes of a former active still
	// under way; later ones find the new epoch and change nothing.
	var epoch string
	err = conn.QueryRowContext(ctx, `INSERT INTO settings (key, value) VALUES ($1, '1') ON CONFLICT (key)
		DO UPDATE SET value = CAST(CAST(settings.value AS BIGINT) + 1 AS TEXT) RETURNING value`, leaseEpochSetting).Scan(&epoch)
	if err != nil {
		discard(conn)
		return false, err
	}
	prev, found, err := readLeaseRecord(ctx, conn)
	if err == nil {
		err = writeLeaseRecord(ctx, conn, leaseRecord{Address: address, PID: os.Getpid(), Since: time.Now().UTC(), Epoch: epoch})
	}
	if err != nil {
		discard(conn)
		return false, err
	}
	l.mu.Lock()
	l.conn, l.pid, l.lastOK, l.epoch = conn, pid, time.Now(), epoch
	l.mu.Unlock()
	return !found || prev.Released, nil
}

// check returns nil if the lock's session is alive and still holds the
// lock, asking PostgreSQL unless a check succeeded within leaseFresh. Any
// failure is final: the lease is lost.
func (l *lease) check(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.conn == nil {
		return ErrLeaseLost
	}
	if time.Since(l.lastOK) < leaseFresh {
		return nil
	}
	start := time.Now()
	cctx, cancel := context.WithTimeout(ctx, leaseCheckTimeout)
	defer cancel()
	var held bool
	err := l.conn.QueryRowContext(cctx, `SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted
		AND pid = pg_backend_pid() AND pid = $1 AND objsubid = 1 AND classid::bigint = $2 AND objid::bigint = $3)`,
		l.pid, int64(uint64(l.key)>>32), int64(uint64(l.key)&0xffffffff)).Scan(&held)
	if err == nil && !held {
		err = errors.New("the lock is no longer held by this session")
	}
	if err != nil {
		if ctx.Err() != nil {
			// The caller gave up (shutting down), not the lease.
			return ctx.Err()
		}
		discard(l.conn)
		l.conn = nil
		return fmt.Errorf("%w: %v", ErrLeaseLost, err)
	}
	l.lastOK = start
	return nil
}

// release gives the lease up, if held (ending its session releases the
// lock), and closes the lease's pool. clean says everything the active ran
// has stopped, so the next active need not wait (leaseTakeover).
func (l *lease) release(clean bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.conn != nil {
		if clean {
			ctx, cancel := context.WithTimeout(context.Background(), leaseCheckTimeout)
			_ = writeLeaseRecord(ctx, l.conn, leaseRecord{Released: true})
			cancel()
		}
		discard(l.conn)
		l.conn = nil
	}
	_ = l.db.Close()
}

// fence returns the write fence of this replica's tenure as the active
// one: the epoch it raised, which no other replica's writes carry. A
// replica that never held the lease gets a fence no row matches.
func (l *lease) fence() sqlstore.Fence {
	l.mu.Lock()
	defer l.mu.Unlock()
	return sqlstore.Fence{Key: leaseEpochSetting, Value: l.epoch}
}

// held reports whether this replica holds the lease (as far as the last
// check knows).
func (l *lease) held() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.conn != nil
}
