package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"custody"
	"custody/batch"
	"custody/compute"
)

// resealTable describes a table of records sealed with account DEKs for a
// re-encryption walk (batch.Resealer): its key columns after account_key,
// in walk order, its sealed columns and the Ref each was sealed for.
type resealTable struct {
	name   string
	keys   []string
	sealed []string
	// etag, if set, is compared with the value read when writing back.
	etag string
	refs func(keys []string) []batch.Ref
}

var (
	resealJobs = resealTable{name: "batch_jobs", keys: []string{"id_key"}, sealed: []string{"spec"}, etag: "etag",
		refs: func(k []string) []batch.Ref { return []batch.Ref{batch.JobRef(k[0])} }}
	resealTasks = resealTable{name: "batch_tasks", keys: []string{"job_key", "id_key"}, sealed: []string{"spec", "failure_message"}, etag: "etag",
		refs: func(k []string) []batch.Ref {
			return []batch.Ref{batch.TaskRef(k[0], k[1]), batch.TaskFailureRef(k[0], k[1])}
		}}
	resealSchedules = resealTable{name: "batch_job_schedules", keys: []string{"id_key"}, sealed: []string{"spec"}, etag: "etag",
		refs: func(k []string) []batch.Ref { return []batch.Ref{batch.JobScheduleRef(k[0])} }}
	resealCertificates = resealTable{name: "batch_certificates", keys: []string{"id_key"}, sealed: []string{"spec"},
		refs: func(k []string) []batch.Ref { return []batch.Ref{batch.CertificateRef(k[0])} }}
	resealPools = resealTable{name: "compute_pools", keys: []string{"id_key"}, sealed: []string{"spec"}, etag: "etag",
		refs: func(k []string) []batch.Ref { return []batch.Ref{compute.PoolRef(k[0])} }}
)

// underGen is the condition "some sealed column carries generation $n":
// bytes 2 to 5 of a sealed value are its DEK generation.
func (t resealTable) underGen(n int) string {
	c := make([]string, len(t.sealed))
	for i, col := range t.sealed {
		c[i] = fmt.Sprintf("substr(%s, 2, 4) = $%d", col, n)
	}
	return "(" + strings.Join(c, " OR ") + ")"
}

// batchUpdate is the update of many records in one statement
// (PostgreSQL): UPDATE ... FROM (VALUES ...), each row holding what uargs
// gives for one record.
func (t resealTable) batchUpdate(rows [][]any) (string, []any) {
	cols := append([]string{}, t.sealed...)
	types := make([]string, 0, len(t.sealed)+len(t.keys)+3)
	for range t.sealed {
		types = append(types, "bytea")
	}
	cols = append(cols, "account_key")
	types = append(types, "text")
	for _, k := range t.keys {
		cols, types = append(cols, k), append(types, "text")
	}
	cols, types = append(cols, "old_sealed"), append(types, "bytea")
	if t.etag != "" {
		cols, types = append(cols, "old_etag"), append(types, "text")
	}
	var args []any
	vals := make([]string, len(rows))
	for i, r := range rows {
		ph := make([]string, len(r))
		for j, a := range r {
			args = append(args, a)
			ph[j] = fmt.Sprintf("$%d::%s", len(args), types[j])
		}
		vals[i] = "(" + strings.Join(ph, ", ") + ")"
	}
	set := make([]string, len(t.sealed))
	for i, c := range t.sealed {
		set[i] = fmt.Sprintf("%s = v.%s", c, c)
	}
	where := []string{"t.account_key = v.account_key"}
	for _, k := range t.keys {
		where = append(where, fmt.Sprintf("t.%s = v.%s", k, k))
	}
	where = append(where, fmt.Sprintf("t.%s = v.old_sealed", t.sealed[0]))
	if t.etag != "" {
		where = append(where, fmt.Sprintf("t.%s = v.old_etag", t.etag))
	}
	return `UPDATE ` + t.name + ` AS t SET ` + strings.Join(set, ", ") + ` FROM (VALUES ` + strings.Join(vals, ", ") + `) AS v (` + strings.Join(cols, ", ") + `)
		WHERE ` + strings.Join(where, " AND "), args
}

func (t resealTable) count(ctx context.Context, db *DB, account string, gen uint32) (int64, error) {
	var n int64
	err := db.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM `+t.name+` WHERE account_key = $1 AND `+t.underGen(2),
		lower(account), batch.GenerationBytes(gen)).Scan(&n)
	return n, dbErr(err, "count sealed records")
}

// reseal re-seals up to limit records after cursor (the key columns joined
// by "/"), in one transaction; see batch.Resealer.
func (t resealTable) reseal(ctx context.Context, db *DB, account string, gen uint32, cursor string, limit int, fn func(*batch.SealedRecord) error) (string, int, error) {
	var after []string
	if cursor != "" {
		after = strings.Split(cursor, "/")
		if len(after) != len(t.keys) {
			return "", 0, custody.Internal(nil, "re-encryption cursor %q does not fit table %s", cursor, t.name)
		}
	} else {
		after = make([]string, len(t.keys))
	}
	args := []any{lower(account), batch.GenerationBytes(gen)}
	// (k1, k2) > ($3, $4): a row value, which both engines answer from
	// the primary key's index.
	ph := make([]string, len(t.keys))
	for i := range t.keys {
		ph[i] = fmt.Sprintf("$%d", 3+i)
	}
	after1 := "(" + strings.Join(t.keys, ", ") + ") > (" + strings.Join(ph, ", ") + ")"
	for _, a := range after {
		args = append(args, a)
	}
	cols := append(append([]string{}, t.keys...), t.sealed...)
	if t.etag != "" {
		cols = append(cols, t.etag)
	}
	q := `SELECT ` + strings.Join(cols, ", ") + ` FROM ` + t.name + ` WHERE account_key = $1 AND ` + after1 + ` AND ` + t.underGen(2) +
		` ORDER BY ` + strings.Join(t.keys, ", ") + fmt.Sprintf(` LIMIT %d`, limit)
	set := make([]string, len(t.sealed))
	for i, c := range t.sealed {
		set[i] = fmt.Sprintf("%s = $%d", c, i+1)
	}
	where := []string{fmt.Sprintf("account_key = $%d", len(t.sealed)+1)}
	for i, k := range t.keys {
		where = append(where, fmt.Sprintf("%s = $%d", k, len(t.sealed)+2+i))
	}
	nw := len(t.sealed) + 2 + len(t.keys)
	where = append(where, fmt.Sprintf("%s = $%d", t.sealed[0], nw))
	if t.etag != "" {
		where = append(where, fmt.Sprintf("%s = $%d", t.etag, nw+1))
	}
	upd := `UPDATE ` + t.name + ` SET ` + strings.Join(set, ", ") + ` WHERE ` + strings.Join(where, " AND ")

	if cursor == "" && db.Engine == Postgres {
		// A walk joins each batch to the table by its key: planner
		// statistics from before the table grew (autovacuum off or not
		// yet run) would make that a scan of the table per batch.
		if _, err := db.db.ExecContext(ctx, `ANALYZE `+t.name); err != nil {
			return "", 0, dbErr(err, "analyze "+t.name)
		}
	}
	var next string
	var n int
	err := db.Tx(ctx, func(tx *sql.Tx) error {
		next, n = "", 0
		rows, err := tx.QueryContext(ctx, q, args...)
		if err != nil {
			return dbErr(err, "read sealed records")
		}
		type row struct {
			keys   []string
			values [][]byte
			etag   string
		}
		var rs []row
		for rows.Next() {
			r := row{keys: make([]string, len(t.keys)), values: make([][]byte, len(t.sealed))}
			dst := make([]any, 0, len(cols))
			for i := range r.keys {
				dst = append(dst, &r.keys[i])
			}
			for i := range r.values {
				dst = append(dst, &r.values[i])
			}
			if t.etag != "" {
				dst = append(dst, &r.etag)
			}
			if err := rows.Scan(dst...); err != nil {
				rows.Close()
				return dbErr(err, "scan sealed record")
			}
			rs = append(rs, r)
		}
		if err := rows.Close(); err != nil {
			return dbErr(err, "read sealed records")
		}
		if err := rows.Err(); err != nil {
			return dbErr(err, "read sealed records")
		}
		if len(rs) == 0 {
			return nil
		}
		// uargs are the update's arguments for one record: its new sealed
		// values, the account, its keys, its first sealed value as read
		// and its etag.
		uargs := func(r row, values [][]byte) []any {
			out := make([]any, 0, nw+1)
			for _, v := range values {
				if v == nil {
					out = append(out, nil)
				} else {
					out = append(out, v)
				}
			}
			out = append(out, lower(account))
			for _, k := range r.keys {
				out = append(out, k)
			}
			out = append(out, r.values[0])
			if t.etag != "" {
				out = append(out, r.etag)
			}
			return out
		}
		var batchArgs [][]any
		for _, r := range rs {
			rec := &batch.SealedRecord{Refs: t.refs(r.keys), Values: make([][]byte, len(r.values))}
			for i, v := range r.values {
				if len(v) > 0 {
					rec.Values[i] = v
				}
			}
			if err := fn(rec); err != nil {
				return err
			}
			batchArgs = append(batchArgs, uargs(r, rec.Values))
		}
		if db.Engine == Postgres {
			// One statement for the batch: a statement trigger (task
			// counts) runs once, not once a record.
			q, args := t.batchUpdate(batchArgs)
			res, err := tx.ExecContext(ctx, q, args...)
			if err != nil {
				return dbErr(err, "re-seal records")
			}
			k, _ := res.RowsAffected()
			n = int(k)
		} else {
			stmt, err := tx.PrepareContext(ctx, upd)
			if err != nil {
				return dbErr(err, "prepare re-seal")
			}
			defer stmt.Close()
			for _, a := range batchArgs {
				res, err := stmt.ExecContext(ctx, a...)
				if err != nil {
					return dbErr(err, "re-seal record")
				}
				if k, _ := res.RowsAffected(); k == 1 {
					n++
				}
			}
		}
		if len(rs) == limit {
			next = strings.Join(rs[len(rs)-1].keys, "/")
		}
		return nil
	})
	if err != nil {
		return "", 0, err
	}
	return next, n, nil
}

// The batch data store's records are walked jobs first, then tasks, job
// schedules and certificates; its cursor is "{table}:{key}".
var dataResealTables = []resealTable{resealJobs, resealTasks, resealSchedules, resealCertificates}

var _ batch.Resealer = (*BatchDataStore)(nil)

func (s *BatchDataStore) CountSealedUnder(ctx context.Context, account string, gen uint32) (int64, error) {
	var total int64
	for _, t := range dataResealTables {
		n, err := t.count(ctx, s.DB, account, gen)
		if err != nil {
			return 0, err
		}
		total += n
	}
	return total, nil
}

func (s *BatchDataStore) ResealUnder(ctx context.Context, account string, gen uint32, cursor string, limit int, fn func(*batch.SealedRecord) error) (string, int, error) {
	i := 0
	inner := ""
	if cursor != "" {
		name, rest, _ := strings.Cut(cursor, ":")
		i = -1
		for j, t := range dataResealTables {
			if t.name == name {
				i = j
			}
		}
		if i < 0 {
			return "", 0, custody.Internal(nil, "re-encryption cursor %q names no table", cursor)
		}
		inner = rest
	}
	t := dataResealTables[i]
	next, n, err := t.reseal(ctx, s.DB, account, gen, inner, limit, fn)
	if err != nil {
		return "", 0, err
	}
	switch {
	case next != "":
		return t.name + ":" + next, n, nil
	case i+1 < len(dataResealTables):
		return dataResealTables[i+1].name + ":", n, nil
	}
	return "", n, nil
}

var _ batch.Resealer = (*ComputePoolStore)(nil)

func (s *ComputePoolStore) CountSealedUnder(ctx context.Context, account string, gen uint32) (int64, error) {
	return resealPools.count(ctx, s.DB, account, gen)
}

func (s *ComputePoolStore) ResealUnder(ctx context.Context, account string, gen uint32, cursor string, limit int, fn func(*batch.SealedRecord) error) (string, int, error) {
	return resealPools.reseal(ctx, s.DB, account, gen, cursor, limit, fn)
}
