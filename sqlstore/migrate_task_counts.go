package sqlstore

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/pressly/goose/v3"
)

// taskCountsVersion is the migration that keeps each job's task counts.
const taskCountsVersion = 11

// taskCountsMigration keeps the number of each job's tasks by state and
// result in batch_task_counts: CreateTasks, the one place tasks are
// inserted, adds the tasks it created with one upsert a call (a trigger run
// for each inserted task cost SQLite a third more CPU an insert, 22 to 28
// µs a task); triggers on batch_tasks count every update and delete, in the
// same transaction, whichever code makes it. Counting a job's tasks then
// reads a handful of rows, however many tasks the job has. It also indexes
// jobs by state alone, for the background deletion of jobs in state
// deleting across accounts.
//
// It is a Go migration because the triggers are written differently on
// each engine: row triggers on SQLite (one writer at a time, so no lock
// order to keep); on PostgreSQL one statement trigger per statement, which
// applies a statement's changes in key order in one upsert, so concurrent
// writers to one job lock its count rows in the same order and only at the
// end of their statement.
func taskCountsMigration(engine Engine) *goose.Migration {
	up := []string{
		`CREATE TABLE batch_task_counts (
			account_key TEXT NOT NULL,
			job_key     TEXT NOT NULL,
			state       TEXT NOT NULL,
			result      TEXT NOT NULL,
			n           BIGINT NOT NULL,
			PRIMARY KEY (account_key, job_key, state, result)
		)`,
		`INSERT INTO batch_task_counts (account_key, job_key, state, result, n)
			SELECT account_key, job_key, state, result, COUNT(*) FROM batch_tasks GROUP BY account_key, job_key, state, result`,
		`CREATE INDEX batch_jobs_by_state ON batch_jobs (state)`,
	}
	down := []string{`DROP INDEX batch_jobs_by_state`, `DROP TABLE batch_task_counts`}
	switch engine {
	case SQLite:
		add := `INSERT INTO batch_task_counts (account_key, job_key, state, result, n) VALUES (NEW.account_key, NEW.job_key, NEW.state, NEW.result, 1)
			ON CONFLICT (account_key, job_key, state, result) DO UPDATE SET n = n + 1;`
		sub := `UPDATE batch_task_counts SET n = n - 1
			WHERE account_key = OLD.account_key AND job_key = OLD.job_key AND state = OLD.state AND result = OLD.result;`
		up = append(up,
			`CREATE TRIGGER batch_tasks_count_update AFTER UPDATE OF state, result ON batch_tasks
				WHEN OLD.state <> NEW.state OR OLD.result <> NEW.result BEGIN `+sub+" "+add+` END`,
			`CREATE TRIGGER batch_tasks_count_delete AFTER DELETE ON batch_tasks BEGIN `+sub+` END`)
		down = append([]string{`DROP TRIGGER batch_tasks_count_update`, `DROP TRIGGER batch_tasks_count_delete`}, down...)
	case Postgres:
		upsert := func(rows string) string {
			return `INSERT INTO batch_task_counts AS c (account_key, job_key, state, result, n)
				SELECT account_key, job_key, state, result, SUM(d) FROM (` + rows + `) AS x
				GROUP BY account_key, job_key, state, result HAVING SUM(d) <> 0
				ORDER BY account_key, job_key, state, result
				ON CONFLICT (account_key, job_key, state, result) DO UPDATE SET n = c.n + EXCLUDED.n;`
		}
		added := `SELECT account_key, job_key, state, result, 1 AS d FROM new_rows`
		removed := `SELECT account_key, job_key, state, result, -1 AS d FROM old_rows`
		up = append(up,
			`CREATE FUNCTION batch_task_counts_apply() RETURNS trigger LANGUAGE plpgsql AS $$
			BEGIN
				IF TG_OP = 'DELETE' THEN
					`+upsert(removed)+`
				ELSE
					`+upsert(added+` UNION ALL `+removed)+`
				END IF;
				RETURN NULL;
			END $$`,
			`CREATE TRIGGER batch_tasks_count_update AFTER UPDATE ON batch_tasks
				REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION batch_task_counts_apply()`,
			`CREATE TRIGGER batch_tasks_count_delete AFTER DELETE ON batch_tasks
				REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION batch_task_counts_apply()`)
		down = append([]string{`DROP TRIGGER batch_tasks_count_update ON batch_tasks`,
			`DROP TRIGGER batch_tasks_count_delete ON batch_tasks`, `DROP FUNCTION batch_task_counts_apply()`}, down...)
	}
	return goose.NewGoMigration(taskCountsVersion, runStatements(up), runStatements(down))
}

func runStatements(stmts []string) *goose.GoFunc {
	return &goose.GoFunc{RunTx: func(ctx context.Context, tx *sql.Tx) error {
		for _, q := range stmts {
			if _, err := tx.ExecContext(ctx, q); err != nil {
				return fmt.Errorf("task counts migration: %w", err)
			}
		}
		return nil
	}}
}

// countDeltasVersion is the migration that makes PostgreSQL's count
// triggers append instead of update.
const countDeltasVersion = 16

// countDeltasMigration: on PostgreSQL the triggers append each statement's
// changes to batch_task_count_deltas instead of updating the count rows.
// An update of the count rows locked them until the end of the writer's
// transaction, and a transaction that moves tasks in several statements
// (UpdateTasks) took them in statement order: two such transactions could
// deadlock (one holding active and waiting for running, the other the
// reverse). Appending takes no lock another writer waits for. Reads add the
// deltas to the count rows; CompactTaskCounts folds them in, one statement
// that locks only count rows, so it never waits on a lock while holding
// another. On SQLite (one writer at a time) the row triggers keep updating
// the count rows and the deltas table stays empty.
func countDeltasMigration(engine Engine) *goose.Migration {
	up := []string{
		`CREATE TABLE batch_task_count_deltas (
			account_key TEXT NOT NULL,
			job_key     TEXT NOT NULL,
			state       TEXT NOT NULL,
			result      TEXT NOT NULL,
			n           BIGINT NOT NULL
		)`,
		`CREATE INDEX batch_task_count_deltas_job ON batch_task_count_deltas (account_key, job_key)`,
	}
	down := []string{`DROP TABLE batch_task_count_deltas`}
	if engine == Postgres {
		apply := func(into, conflict string) string {
			upsert := func(rows string) string {
				return `INSERT INTO ` + into + ` (account_key, job_key, state, result, n)
				SELECT account_key, job_key, state, result, SUM(d) FROM (` + rows + `) AS x
				GROUP BY account_key, job_key, state, result HAVING SUM(d) <> 0
				ORDER BY account_key, job_key, state, result` + conflict + `;`
			}
			added := `SELECT account_key, job_key, state, result, 1 AS d FROM new_rows`
			removed := `SELECT account_key, job_key, state, result, -1 AS d FROM old_rows`
			return `CREATE OR REPLACE FUNCTION batch_task_counts_apply() RETURNS trigger LANGUAGE plpgsql AS $$
			BEGIN
				IF TG_OP = 'DELETE' THEN
					` + upsert(removed) + `
				ELSE
					` + upsert(added+` UNION ALL `+removed) + `
				END IF;
				RETURN NULL;
			END $$`
		}
		up = append(up, apply("batch_task_count_deltas", ""))
		down = append([]string{apply("batch_task_counts AS c", `
				ON CONFLICT (account_key, job_key, state, result) DO UPDATE SET n = c.n + EXCLUDED.n`),
			`INSERT INTO batch_task_counts AS c (account_key, job_key, state, result, n)
				SELECT account_key, job_key, state, result, SUM(n) FROM batch_task_count_deltas GROUP BY account_key, job_key, state, result
				ON CONFLICT (account_key, job_key, state, result) DO UPDATE SET n = c.n + EXCLUDED.n`}, down...)
	}
	return goose.NewGoMigration(countDeltasVersion, runStatements(up), runStatements(down))
}
